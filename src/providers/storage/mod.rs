//! Object storage: the adapter between the service and an S3-compatible store, for attachments
//! (docs/attachments.md). It presigns the URLs clients upload and download through (the bytes
//! never pass through the service), and makes the service's own few calls: reading an uploaded
//! object back to check it, streaming a direct upload to it, deleting objects, and probing the bucket.
//!
//! Requests are signed with AWS Signature Version 4 (query-string form) by `rusty-s3`, a small
//! sans-IO signer, and sent through the service's reqwest client (rustls); docs/attachments.md
//! says why this and not `object_store` or the AWS SDK.
//!
//! Every call the service makes goes through the store's circuit breaker (`src/breaker.rs`,
//! provider `storage`), then its bulkhead (`STORAGE_MAX_CONCURRENCY`), and is cut at
//! `STORAGE_TIMEOUT_MS` or the caller's deadline, whichever comes first. A call that cannot
//! reach the store (a transport error, a 5xx, no answer in time) is a failure for the breaker;
//! `STORAGE_BREAKER_FAILURES` in a row open it, and while it is open nothing is sent to the
//! store: calls are refused at once (STORAGE_UNAVAILABLE with RetryInfo) and AttachmentService is
//! NOT_SERVING. After `STORAGE_BREAKER_COOL_DOWN_MS` the bucket probe (`jobs/storage_probe.rs`)
//! is the one call let through; its success closes the breaker. Nothing here touches PostgreSQL:
//! callers make their storage calls between their transactions, never inside one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use rusty_s3::actions::{DeleteObject, GetObject, HeadBucket, PutObject, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use crate::configuration::StorageSettings;
use crate::errors::{AppError, Dependency};
use crate::resilience::breaker::{
    BreakerConfig, BreakerPermit, BreakerState, CallOutcome, CallResult, CircuitBreaker,
};
use crate::resilience::bulkhead::{Bulkhead, BulkheadFull};

/// The provider's name in PROVIDER_BUSY answers, logs and metrics.
pub const PROVIDER: &str = "storage";

/// How long the URLs of the service's own calls are valid: they are sent at once.
const OWN_CALL_TTL: Duration = Duration::from_secs(60);

/// How many leading bytes of an object [`ObjectStorage::inspect`] keeps for content sniffing.
pub const SNIFF_BYTES: usize = 512;

/// How many pieces of a streamed upload ([`ObjectStorage::put_streamed`]) may wait between the
/// request and the store's connection.
pub const PIECES_IN_FLIGHT: usize = 2;

/// The store, as the service reaches it.
#[derive(Debug)]
pub struct ObjectStorage {
    /// The bucket where the service sends its own calls (`STORAGE_ENDPOINT`), path-style.
    bucket: Bucket,
    /// The same bucket where clients are sent (`STORAGE_PUBLIC_ENDPOINT`, else the endpoint):
    /// the host is signed.
    public_bucket: Bucket,
    /// The access key; its `Debug` never shows the secret.
    credentials: Credentials,
    http: reqwest::Client,
    timeout: Duration,
    bulkhead: Bulkhead,
    breaker: CircuitBreaker,
    /// Calls sent to the store (for tests: none is sent while the breaker is open).
    sent: AtomicU64,
}

/// A presigned request a client sends itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresignedRequest {
    pub url: url::Url,
    /// Headers the client must send exactly as given (they are signed).
    pub headers: Vec<(String, String)>,
    pub expires_at: DateTime<Utc>,
}

/// What an upload must be: the signature of its URL binds all of it.
#[derive(Clone, Debug)]
pub struct UploadTerms<'a> {
    pub content_type: &'a str,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
}

/// An object as the store holds it, read back in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Its length, counted while reading (at most one byte past the limit read).
    pub size_bytes: u64,
    /// The `Content-Type` the store answers with.
    pub content_type: Option<String>,
    /// The SHA-256 of the bytes read; meaningful only when the whole object was read.
    pub sha256: [u8; 32],
    /// The first [`SNIFF_BYTES`] bytes.
    pub head: Vec<u8>,
    /// The store's `ETag` of what was read: a delete conditional on it deletes these bytes and
    /// never an object written over them since.
    pub etag: Option<String>,
}

/// What a conditional delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// The object is gone (or was not there).
    Deleted,
    /// The object was written over since its `ETag` was read: it was kept.
    ChangedSince,
}

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The store cannot be reached, answered 5xx, or did not answer in time.
    #[error("object storage is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// The store's circuit breaker is open (or its one probe is in flight): nothing was sent.
    #[error("object storage's circuit breaker is open")]
    Open { retry_after: Duration },
    /// This instance already has as many calls in flight as the bulkhead allows.
    #[error(transparent)]
    Busy(#[from] BulkheadFull),
    /// The caller's deadline passed before the store answered, sooner than the store's own
    /// timeout: nothing is known of the store, and its breaker is told nothing.
    #[error("the request's deadline passed before object storage answered")]
    DeadlineExceeded,
    /// The store refused the call (credentials, a missing bucket): a configuration problem.
    #[error("object storage refused {operation}: HTTP {status}")]
    Refused {
        operation: &'static str,
        status: u16,
    },
}

/// Whose time a call to the store runs on, which decides what running out of it tells the
/// store's breaker.
#[derive(Clone, Copy, Debug)]
enum TimeOf {
    /// A request's, up to its deadline: a deadline that comes before the store's timeout is
    /// the client's choice, and running out of it is no failure of the store's.
    Request,
    /// The service's own (the health probe): running out of it is the store's failure.
    Service,
}

impl From<StorageError> for AppError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Unavailable(source) => AppError::Unavailable {
                dependency: Dependency::Storage,
                source,
            },
            StorageError::Open { retry_after } => AppError::StorageBreakerOpen { retry_after },
            StorageError::Busy(full) => AppError::ProviderBusy {
                provider: full.provider,
                retry_after: full.retry_after,
            },
            StorageError::DeadlineExceeded => AppError::DeadlineExceeded,
            error @ StorageError::Refused { .. } => AppError::internal(error),
        }
    }
}

impl ObjectStorage {
    pub fn new(settings: &StorageSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        let bucket_at = |endpoint: &url::Url| {
            Bucket::new(
                endpoint.clone(),
                UrlStyle::Path,
                settings.bucket.clone(),
                settings.region.clone(),
            )
            .map_err(|error| anyhow::anyhow!("STORAGE_ENDPOINT or STORAGE_BUCKET: {error}"))
        };
        Ok(Self {
            bucket: bucket_at(&settings.endpoint)?,
            public_bucket: bucket_at(
                settings
                    .public_endpoint
                    .as_ref()
                    .unwrap_or(&settings.endpoint),
            )?,
            credentials: Credentials::new(
                settings.access_key_id.clone(),
                settings.secret_access_key.expose_secret(),
            ),
            http,
            timeout: settings.timeout,
            bulkhead: Bulkhead::new(PROVIDER, settings.max_concurrency, Duration::from_secs(1)),
            breaker: CircuitBreaker::new(
                PROVIDER,
                BreakerConfig {
                    failure_threshold: settings.breaker_failure_threshold,
                    cool_down: settings.breaker_cool_down,
                },
            ),
            sent: AtomicU64::new(0),
        })
    }

    /// Whether the store's breaker is closed: the store answered lately. Half-open (the cool-down
    /// ended, the probe not yet through) counts as unavailable: nothing confirmed it is back.
    pub fn is_available(&self) -> bool {
        self.breaker.state() == BreakerState::Closed
    }

    /// While the breaker is not closed: how long until the probe may try the store again (zero
    /// once the cool-down has ended). `None` when closed.
    pub fn refusing_for(&self) -> Option<Duration> {
        match self.breaker.state() {
            BreakerState::Closed => None,
            BreakerState::Open | BreakerState::HalfOpen => {
                Some(self.breaker.refusing_for().unwrap_or(Duration::ZERO))
            }
        }
    }

    /// The store's circuit breaker (its state is exported in metrics, provider `storage`).
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// How many calls this instance has sent to the store since it started.
    pub fn calls_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Leave from the breaker to make one call; refused at once while it is open.
    fn admit(&self) -> Result<BreakerPermit, StorageError> {
        self.breaker
            .try_acquire()
            .map_err(|rejection| StorageError::Open {
                retry_after: rejection.retry_after,
            })
    }

    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    /// A URL the client PUTs the file to, valid for `ttl`, whose signature binds the length,
    /// the content type, the SHA-256 and the `Content-Disposition` stored with the object.
    pub fn presign_upload(
        &self,
        key: &str,
        terms: &UploadTerms<'_>,
        filename: &str,
        ttl: Duration,
    ) -> PresignedRequest {
        let now = Utc::now();
        let headers = vec![
            (
                "content-disposition".to_owned(),
                attachment_disposition(filename),
            ),
            ("content-length".to_owned(), terms.size_bytes.to_string()),
            ("content-type".to_owned(), terms.content_type.to_owned()),
            (
                "x-amz-checksum-sha256".to_owned(),
                base64::engine::general_purpose::STANDARD.encode(terms.sha256),
            ),
        ];
        let mut action = PutObject::new(&self.public_bucket, Some(&self.credentials), key);
        for (name, value) in &headers {
            action.headers_mut().insert(name.as_str(), value.as_str());
        }
        let url = action.sign(ttl);
        PresignedRequest {
            url,
            headers,
            expires_at: now + ttl,
        }
    }

    /// A URL the client GETs the file from, valid for `ttl`: the store answers with
    /// `Content-Disposition: attachment` and `content_type`, whatever the object's metadata says,
    /// so a browser saves the file instead of rendering it.
    pub fn presign_download(
        &self,
        key: &str,
        filename: &str,
        content_type: &str,
        ttl: Duration,
    ) -> PresignedRequest {
        let now = Utc::now();
        let mut action = GetObject::new(&self.public_bucket, Some(&self.credentials), key);
        action.query_mut().insert(
            "response-content-disposition",
            attachment_disposition(filename),
        );
        action
            .query_mut()
            .insert("response-content-type", content_type);
        PresignedRequest {
            url: action.sign(ttl),
            headers: Vec::new(),
            expires_at: now + ttl,
        }
    }

    /// Reads the object `key` back (`None`: there is none), hashing it as it streams and keeping
    /// its first bytes; stops reading past `max_bytes`. Holds one chunk in memory at a time.
    pub async fn inspect(
        &self,
        key: &str,
        max_bytes: u64,
        deadline: Instant,
    ) -> Result<Option<StoredObject>, StorageError> {
        let permit = self.admit()?;
        let _place = self.bulkhead.try_enter()?;
        let url = GetObject::new(&self.bucket, Some(&self.credentials), key).sign(OWN_CALL_TTL);
        let read = async {
            let mut response = self.http.get(url).send().await?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok::<_, reqwest::Error>(Ok(None));
            }
            if !response.status().is_success() {
                return Ok(Err(response.status()));
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let etag = response
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let mut hasher = Sha256::new();
            let mut size_bytes: u64 = 0;
            let mut head = Vec::with_capacity(SNIFF_BYTES);
            while let Some(chunk) = response.chunk().await? {
                size_bytes += chunk.len() as u64;
                if head.len() < SNIFF_BYTES {
                    let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                hasher.update(&chunk);
                if size_bytes > max_bytes {
                    break;
                }
            }
            Ok(Ok(Some(StoredObject {
                size_bytes,
                content_type,
                sha256: hasher.finalize().into(),
                head,
                etag,
            })))
        };
        match self
            .bounded(permit, read, deadline, TimeOf::Request)
            .await?
        {
            Ok(object) => Ok(object),
            Err(status) => self.refused("GET", status),
        }
    }

    /// Stores the object `key` from `pieces` as they come (a direct upload, streamed), declared
    /// `size_bytes` long (S3 needs the length before the body), with its content type and
    /// download disposition.
    ///
    /// At most [`PIECES_IN_FLIGHT`] pieces wait in the channel between `pieces` and the store's
    /// connection: a store that reads slowly slows the sender down instead of filling memory.
    /// The outer result is the store's: a transport error, a 5xx, a piece the store did not take
    /// within `STORAGE_TIMEOUT_MS` or no answer within it once the body was sent are failures
    /// for the breaker. The inner one is the source's: the first `Err` of `pieces` stops the
    /// call at once (the body is cut short, so the store keeps nothing), is returned as it is
    /// and counts for nothing, nor does waiting on a slow source: the caller bounds the whole
    /// call by its deadline, and dropping this future records nothing either.
    ///
    /// Returns as soon as the store has answered: `pieces` may then still hold its end (or
    /// bytes beyond the declared length), for the caller to read.
    pub async fn put_streamed<S, E>(
        &self,
        key: &str,
        content_type: &str,
        filename: &str,
        size_bytes: u64,
        pieces: &mut S,
    ) -> Result<Result<(), E>, StorageError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    {
        let permit = self.admit()?;
        let _place = self.bulkhead.try_enter()?;
        let headers = [
            (
                "content-disposition".to_owned(),
                attachment_disposition(filename),
            ),
            ("content-length".to_owned(), size_bytes.to_string()),
            ("content-type".to_owned(), content_type.to_owned()),
        ];
        let mut action = PutObject::new(&self.bucket, Some(&self.credentials), key);
        for (name, value) in &headers {
            action.headers_mut().insert(name.as_str(), value.as_str());
        }
        let url = action.sign(OWN_CALL_TTL);
        let (sender, receiver) =
            tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(PIECES_IN_FLIGHT);
        let mut request = self
            .http
            .put(url)
            .body(reqwest::Body::wrap_stream(ReceiverStream::new(receiver)));
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let answer = request.send();
        let forward = async move {
            while let Some(piece) = pieces.next().await {
                let piece = match piece {
                    Ok(piece) => piece,
                    Err(error) => return Err(Some(error)),
                };
                match tokio::time::timeout(self.timeout, sender.send(Ok(piece))).await {
                    Ok(Ok(())) => {}
                    // The request is over (answered or failed) before the body was: its
                    // answer says how.
                    Ok(Err(_)) => return Ok(()),
                    // The store stopped reading.
                    Err(_) => return Err(None),
                }
            }
            Ok(())
        };
        tokio::pin!(answer, forward);
        let mut sent_at = None;
        let outcome = loop {
            tokio::select! {
                biased;
                forwarded = &mut forward, if sent_at.is_none() => match forwarded {
                    Ok(()) => sent_at = Some(Instant::now()),
                    Err(Some(error)) => return Ok(Err(error)),
                    Err(None) => {
                        break Err(StorageError::Unavailable(anyhow::anyhow!(
                            "the store took no part of the body within {:?}",
                            self.timeout
                        )));
                    }
                },
                answered = &mut answer => break match answered {
                    Ok(response) if response.status().is_server_error() => {
                        Err(StorageError::Unavailable(anyhow::anyhow!(
                            "the store answered {}",
                            response.status()
                        )))
                    }
                    Ok(response) => Ok(response.status()),
                    Err(error) => Err(StorageError::Unavailable(error.into())),
                },
                () = tokio::time::sleep_until(
                    sent_at.unwrap_or_else(Instant::now) + self.timeout
                ), if sent_at.is_some() => {
                    break Err(StorageError::Unavailable(anyhow::anyhow!(
                        "no answer from the store in time"
                    )));
                }
            }
        };
        permit.record(if outcome.is_ok() {
            CallOutcome::Success
        } else {
            CallOutcome::Failure
        });
        let status = outcome?;
        if status.is_success() {
            Ok(Ok(()))
        } else {
            self.refused("PUT", status)
        }
    }

    /// Deletes the object `key`; deleting one that is not there succeeds.
    pub async fn delete(&self, key: &str, deadline: Instant) -> Result<(), StorageError> {
        match self.delete_matching(key, None, deadline).await? {
            Deletion::Deleted => Ok(()),
            // Unconditional: the store never answers that the object changed.
            Deletion::ChangedSince => {
                self.refused("DELETE", reqwest::StatusCode::PRECONDITION_FAILED)
            }
        }
    }

    /// Deletes the object `key` only while it is still the one whose `ETag` is `etag` (S3's
    /// conditional delete, `If-Match`): an object written over it since is kept. Without an
    /// `etag`, deletes whatever is there.
    pub async fn delete_matching(
        &self,
        key: &str,
        etag: Option<&str>,
        deadline: Instant,
    ) -> Result<Deletion, StorageError> {
        let permit = self.admit()?;
        let _place = self.bulkhead.enter(deadline).await?;
        let url = DeleteObject::new(&self.bucket, Some(&self.credentials), key).sign(OWN_CALL_TTL);
        let mut request = self.http.delete(url);
        if let Some(etag) = etag {
            request = request.header(reqwest::header::IF_MATCH, etag);
        }
        let status = self
            .bounded(
                permit,
                async { Ok(request.send().await?.status()) },
                deadline,
                TimeOf::Request,
            )
            .await?;
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(Deletion::Deleted)
        } else if status == reqwest::StatusCode::PRECONDITION_FAILED && etag.is_some() {
            Ok(Deletion::ChangedSince)
        } else {
            self.refused("DELETE", status)
        }
    }

    /// Whether the bucket answers (`HEAD` on it). A refusal (credentials, no bucket) counts as a
    /// failure too: attachments cannot work either. While the breaker is open nothing is sent;
    /// once its cool-down has ended this is the probe whose success closes it.
    pub async fn probe(&self, deadline: Instant) -> Result<(), StorageError> {
        let permit = self.admit()?;
        let url = HeadBucket::new(&self.bucket, Some(&self.credentials)).sign(OWN_CALL_TTL);
        self.bounded(
            permit,
            async { Ok(BucketAnswer(self.http.head(url).send().await?.status())) },
            deadline,
            TimeOf::Service,
        )
        .await
        .map(|_| ())
    }

    /// Runs `call` until the earlier of the store's timeout and `deadline`, and tells the
    /// breaker how it went: a transport error, a 5xx or running out of time is a failure, any
    /// other answer a success. Running out of a request's deadline before the store's timeout
    /// (a client's short deadline) says nothing of the store: the breaker counts it as neither,
    /// or any caller could open it for every account with a few impatient requests.
    async fn bounded<T>(
        &self,
        permit: BreakerPermit,
        call: impl Future<Output = Result<T, reqwest::Error>>,
        deadline: Instant,
        time_of: TimeOf,
    ) -> Result<T, StorageError>
    where
        T: StatusLike,
    {
        let stores = Instant::now() + self.timeout;
        let callers_first = matches!(time_of, TimeOf::Request) && deadline < stores;
        let deadline = deadline.min(stores);
        self.sent.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let answer = tokio::time::timeout_at(deadline, call).await;
        let took = started.elapsed();
        let outcome = match answer {
            Ok(Ok(value)) if value.server_error() => {
                self.breaker.timed(CallResult::Failed, took);
                Err(StorageError::Unavailable(anyhow::anyhow!(
                    "the store answered {}",
                    value.describe()
                )))
            }
            Ok(Ok(value)) => {
                let result = if value.client_error() {
                    CallResult::Refused
                } else {
                    CallResult::Ok
                };
                self.breaker.timed(result, took);
                Ok(value)
            }
            Ok(Err(error)) => {
                self.breaker.timed(CallResult::NoAnswer, took);
                Err(StorageError::Unavailable(error.into()))
            }
            Err(_) if callers_first => {
                permit.record(CallOutcome::Neutral);
                return Err(StorageError::DeadlineExceeded);
            }
            Err(_) => {
                self.breaker.timed(CallResult::NoAnswer, took);
                Err(StorageError::Unavailable(anyhow::anyhow!(
                    "no answer from the store in time"
                )))
            }
        };
        permit.record(if outcome.is_ok() {
            CallOutcome::Success
        } else {
            CallOutcome::Failure
        });
        outcome
    }

    fn refused<T>(
        &self,
        operation: &'static str,
        status: reqwest::StatusCode,
    ) -> Result<T, StorageError> {
        Err(StorageError::Refused {
            operation,
            status: status.as_u16(),
        })
    }
}

/// What [`ObjectStorage::bounded`] needs to know of a call's result: whether the store failed,
/// and (for its latency's `outcome`) whether it refused the request.
trait StatusLike {
    fn server_error(&self) -> bool;
    fn describe(&self) -> String;
    fn client_error(&self) -> bool {
        false
    }
}

impl StatusLike for reqwest::StatusCode {
    fn server_error(&self) -> bool {
        self.is_server_error()
    }
    fn client_error(&self) -> bool {
        self.is_client_error()
    }
    fn describe(&self) -> String {
        self.to_string()
    }
}

/// The bucket probe's answer: anything but a success means attachments cannot work.
struct BucketAnswer(reqwest::StatusCode);

impl StatusLike for BucketAnswer {
    fn server_error(&self) -> bool {
        !self.0.is_success()
    }
    fn describe(&self) -> String {
        self.0.to_string()
    }
}

impl StatusLike for Result<Option<StoredObject>, reqwest::StatusCode> {
    fn server_error(&self) -> bool {
        matches!(self, Err(status) if status.is_server_error())
    }
    fn client_error(&self) -> bool {
        matches!(self, Err(status) if status.is_client_error())
    }
    fn describe(&self) -> String {
        match self {
            Ok(_) => "an object".to_owned(),
            Err(status) => status.to_string(),
        }
    }
}

/// `attachment; filename="<ascii>"; filename*=UTF-8''<encoded>` (RFC 6266): the ASCII fallback
/// replaces anything outside printable ASCII, quotes and backslashes with `_`.
pub fn attachment_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        percent_encoding::utf8_percent_encode(filename, ATTR_CHAR)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> ObjectStorage {
        ObjectStorage::new(&StorageSettings {
            endpoint: "http://10.0.0.1:8333".parse().unwrap(),
            public_endpoint: Some("https://files.example.com".parse().unwrap()),
            region: "eu-west-1".to_owned(),
            bucket: "desk".to_owned(),
            access_key_id: "AKID".to_owned(),
            secret_access_key: "secret".into(),
            timeout: Duration::from_secs(1),
            max_concurrency: 1,
            probe_interval: Duration::from_secs(1),
            breaker_failure_threshold: 1,
            breaker_cool_down: Duration::from_secs(1),
        })
        .unwrap()
    }

    #[test]
    fn an_upload_url_is_public_path_style_and_signs_length_type_checksum_and_disposition() {
        let upload = storage().presign_upload(
            "acct/0123",
            &UploadTerms {
                content_type: "image/png",
                size_bytes: 42,
                sha256: [7; 32],
            },
            "cat.png",
            Duration::from_secs(900),
        );
        assert_eq!(upload.url.host_str(), Some("files.example.com"));
        assert_eq!(upload.url.path(), "/desk/acct/0123");
        let query: std::collections::HashMap<_, _> = upload.url.query_pairs().collect();
        assert_eq!(
            query["X-Amz-SignedHeaders"],
            "content-disposition;content-length;content-type;host;x-amz-checksum-sha256"
        );
        assert_eq!(query["X-Amz-Expires"], "900");
        assert!(query["X-Amz-Credential"].starts_with("AKID/"));
        assert!(!upload.url.as_str().contains("secret"));
        let names: Vec<&str> = upload
            .headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "content-disposition",
                "content-length",
                "content-type",
                "x-amz-checksum-sha256"
            ]
        );
    }

    #[test]
    fn a_download_url_signs_the_forced_disposition_and_type() {
        let download = storage().presign_download(
            "acct/0123",
            "page.html",
            "text/plain",
            Duration::from_secs(300),
        );
        let query: std::collections::HashMap<_, _> = download.url.query_pairs().collect();
        assert_eq!(
            query["response-content-disposition"],
            "attachment; filename=\"page.html\"; filename*=UTF-8''page.html"
        );
        assert_eq!(query["response-content-type"], "text/plain");
        assert_eq!(query["X-Amz-SignedHeaders"], "host");
    }

    #[test]
    fn a_disposition_forces_a_download_and_keeps_the_name_in_utf8() {
        assert_eq!(
            attachment_disposition("résumé \"final\".pdf"),
            "attachment; filename=\"r_sum_ _final_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
        );
    }
}
