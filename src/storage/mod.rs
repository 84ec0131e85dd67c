//! Object storage: the adapter between the service and an S3-compatible store, for attachments
//! (docs/attachments.md). It presigns the URLs clients upload and download through (the bytes
//! never pass through the service), and makes the service's own few calls: reading an uploaded
//! object back to check it, deleting objects, and probing the bucket for health.
//!
//! Every call the service makes goes through the store's bulkhead (`STORAGE_MAX_CONCURRENCY`)
//! and is cut at `STORAGE_TIMEOUT_MS` or the caller's deadline, whichever comes first. A call
//! that cannot reach the store marks it unavailable (AttachmentService NOT_SERVING in health)
//! until a call or the probe reaches it again. Nothing here touches PostgreSQL: callers make
//! their storage calls between their transactions, never inside one.

pub mod sigv4;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::bulkhead::{Bulkhead, BulkheadFull};
use crate::configuration::StorageSettings;
use crate::errors::{AppError, Dependency};
pub use sigv4::SigningKey;

/// The provider's name in PROVIDER_BUSY answers, logs and metrics.
pub const PROVIDER: &str = "storage";

/// How many leading bytes of an object [`ObjectStorage::inspect`] keeps for content sniffing.
pub const SNIFF_BYTES: usize = 512;

/// The store, as the service reaches it.
#[derive(Debug)]
pub struct ObjectStorage {
    /// Where the service sends its own calls (`STORAGE_ENDPOINT`).
    endpoint: url::Url,
    /// Where clients are sent (`STORAGE_PUBLIC_ENDPOINT`, else the endpoint): the host is signed.
    public_endpoint: url::Url,
    bucket: String,
    key: SigningKey,
    http: reqwest::Client,
    timeout: Duration,
    bulkhead: Bulkhead,
    available: AtomicBool,
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
}

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The store cannot be reached, answered 5xx, or did not answer in time.
    #[error("object storage is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// This instance already has as many calls in flight as the bulkhead allows.
    #[error(transparent)]
    Busy(#[from] BulkheadFull),
    /// The store refused the call (credentials, a missing bucket): a configuration problem.
    #[error("object storage refused {operation}: HTTP {status}")]
    Refused {
        operation: &'static str,
        status: u16,
    },
}

impl From<StorageError> for AppError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Unavailable(source) => AppError::Unavailable {
                dependency: Dependency::Storage,
                source,
            },
            StorageError::Busy(full) => AppError::ProviderBusy {
                provider: full.provider,
                retry_after: full.retry_after,
            },
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
        Ok(Self {
            endpoint: settings.endpoint.clone(),
            public_endpoint: settings
                .public_endpoint
                .clone()
                .unwrap_or_else(|| settings.endpoint.clone()),
            bucket: settings.bucket.clone(),
            key: SigningKey {
                access_key_id: settings.access_key_id.clone(),
                secret_access_key: settings.secret_access_key.clone(),
                region: settings.region.clone(),
            },
            http,
            timeout: settings.timeout,
            bulkhead: Bulkhead::new(PROVIDER, settings.max_concurrency, Duration::from_secs(1)),
            available: AtomicBool::new(true),
        })
    }

    /// Whether the last call (or probe) reached the store.
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    /// The URL of `key` in the bucket, under `base`.
    fn object_url(&self, base: &url::Url, key: &str) -> url::Url {
        let mut url = base.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .pop_if_empty()
            .push(&self.bucket)
            .extend(key.split('/'));
        url
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
        let url = self.object_url(&self.public_endpoint, key);
        let signed = self.sign("PUT", &url, &headers, now, ttl);
        PresignedRequest {
            url: signed,
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
        let mut url = self.object_url(&self.public_endpoint, key);
        url.query_pairs_mut()
            .append_pair(
                "response-content-disposition",
                &attachment_disposition(filename),
            )
            .append_pair("response-content-type", content_type);
        let signed = self.sign("GET", &url, &[], now, ttl);
        PresignedRequest {
            url: signed,
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
        let _place = self.bulkhead.try_enter()?;
        let url = self.own_url("GET", key);
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
            })))
        };
        match self.bounded(read, deadline).await? {
            Ok(object) => Ok(object),
            Err(status) => self.refused("GET", status),
        }
    }

    /// Stores `bytes` as the object `key` (a direct upload: the request already holds them, at
    /// most `ATTACHMENT_DIRECT_MAX_BYTES`), with its content type and download disposition.
    pub async fn put(
        &self,
        key: &str,
        content_type: &str,
        filename: &str,
        bytes: bytes::Bytes,
        deadline: Instant,
    ) -> Result<(), StorageError> {
        let _place = self.bulkhead.try_enter()?;
        let headers = vec![
            (
                "content-disposition".to_owned(),
                attachment_disposition(filename),
            ),
            ("content-type".to_owned(), content_type.to_owned()),
        ];
        let url = self.object_url(&self.endpoint, key);
        let url = self.sign("PUT", &url, &headers, Utc::now(), Duration::from_secs(60));
        let mut request = self.http.put(url).body(bytes);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let status = self
            .bounded(async { Ok(request.send().await?.status()) }, deadline)
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            self.refused("PUT", status)
        }
    }

    /// Deletes the object `key`; deleting one that is not there succeeds.
    pub async fn delete(&self, key: &str, deadline: Instant) -> Result<(), StorageError> {
        let _place = self.bulkhead.enter(deadline).await?;
        let url = self.own_url("DELETE", key);
        let status = self
            .bounded(
                async { Ok(self.http.delete(url).send().await?.status()) },
                deadline,
            )
            .await?;
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            self.refused("DELETE", status)
        }
    }

    /// Whether the bucket answers (`HEAD` on it); marks the store available or not.
    pub async fn probe(&self, deadline: Instant) -> Result<(), StorageError> {
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .pop_if_empty()
            .push(&self.bucket);
        let url = self.sign("HEAD", &url, &[], Utc::now(), Duration::from_secs(60));
        let status = self
            .bounded(
                async { Ok(self.http.head(url).send().await?.status()) },
                deadline,
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            // Reachable but refusing (credentials, no bucket): attachments cannot work either.
            self.available.store(false, Ordering::Relaxed);
            self.refused("HEAD bucket", status)
        }
    }

    /// A short-lived presigned URL for the service's own call.
    fn own_url(&self, method: &str, key: &str) -> url::Url {
        let url = self.object_url(&self.endpoint, key);
        self.sign(method, &url, &[], Utc::now(), Duration::from_secs(60))
    }

    fn sign(
        &self,
        method: &str,
        url: &url::Url,
        headers: &[(String, String)],
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> url::Url {
        let headers: Vec<(&str, String)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        sigv4::presign(
            &self.key,
            &sigv4::Presign {
                method,
                url,
                headers: &headers,
                now,
                expires_in: ttl,
            },
        )
    }

    /// Runs `call` until the earlier of the store's timeout and `deadline`; a transport error,
    /// a 5xx or running out of time marks the store unavailable, anything else available.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, reqwest::Error>>,
        deadline: Instant,
    ) -> Result<T, StorageError>
    where
        T: StatusLike,
    {
        let deadline = deadline.min(Instant::now() + self.timeout);
        let outcome = match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(value)) if value.server_error() => Err(StorageError::Unavailable(
                anyhow::anyhow!("the store answered {}", value.describe()),
            )),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StorageError::Unavailable(error.into())),
            Err(_) => Err(StorageError::Unavailable(anyhow::anyhow!(
                "no answer from the store in time"
            ))),
        };
        self.available.store(outcome.is_ok(), Ordering::Relaxed);
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

/// What [`ObjectStorage::bounded`] needs to know of a call's result: whether the store failed.
trait StatusLike {
    fn server_error(&self) -> bool;
    fn describe(&self) -> String;
}

impl StatusLike for reqwest::StatusCode {
    fn server_error(&self) -> bool {
        self.is_server_error()
    }
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl StatusLike for Result<Option<StoredObject>, reqwest::StatusCode> {
    fn server_error(&self) -> bool {
        matches!(self, Err(status) if status.is_server_error())
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

    #[test]
    fn a_disposition_forces_a_download_and_keeps_the_name_in_utf8() {
        assert_eq!(
            attachment_disposition("résumé \"final\".pdf"),
            "attachment; filename=\"r_sum_ _final_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
        );
    }
}
