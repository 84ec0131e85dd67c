//! Attachments (docs/attachments.md): their limits (`ATTACHMENT_*`) and the S3-compatible store
//! they live in (`STORAGE_*`).

use std::time::Duration;

use secrecy::SecretString;

use super::reader::Reader;

/// Attachments (docs/attachments.md): their limits, and the object storage they live in.
#[derive(Clone, Debug)]
pub struct AttachmentSettings {
    /// `STORAGE_*`: `None` when `STORAGE_ENDPOINT` is unset (attachments unconfigured).
    pub storage: Option<StorageSettings>,
    /// `ATTACHMENT_MAX_BYTES`: the largest file accepted (default 25 MiB).
    pub max_bytes: u64,
    /// `ATTACHMENT_DIRECT_MAX_BYTES`: the largest file UploadAttachment takes in the request
    /// itself (default 1 MiB; larger files go through a presigned upload).
    pub direct_max_bytes: u64,
    /// `ATTACHMENT_MAX_PER_TICKET`: attachments a ticket may have, pending ones included.
    pub max_per_ticket: u32,
    /// `ATTACHMENT_UPLOAD_URL_TTL_SECS`: how long an upload URL is valid (at most 900).
    pub upload_url_ttl: Duration,
    /// `ATTACHMENT_DOWNLOAD_URL_TTL_SECS`: how long a download URL is valid (at most 300).
    pub download_url_ttl: Duration,
    /// `ATTACHMENT_SWEEP_INTERVAL_MS`: how often the sweeper deletes abandoned uploads and the
    /// objects of deleted attachments.
    pub sweep_interval: Duration,
    /// `ATTACHMENT_ABANDON_GRACE_SECS`: how long after its URL expired an upload still pending
    /// is swept, object and all.
    pub abandon_grace: Duration,
}

/// An S3-compatible store (path-style requests, SigV4).
#[derive(Clone, Debug)]
pub struct StorageSettings {
    /// `STORAGE_ENDPOINT`: where the service reaches the store (`http://` or `https://`).
    pub endpoint: url::Url,
    /// `STORAGE_PUBLIC_ENDPOINT`: where clients reach it, when not the same (signed URLs name it).
    pub public_endpoint: Option<url::Url>,
    /// `STORAGE_REGION` (default `us-east-1`).
    pub region: String,
    /// `STORAGE_BUCKET`: required with the endpoint.
    pub bucket: String,
    /// `STORAGE_ACCESS_KEY_ID`: required with the endpoint.
    pub access_key_id: String,
    /// `STORAGE_SECRET_ACCESS_KEY`: required with the endpoint; never printed.
    pub secret_access_key: SecretString,
    /// `STORAGE_TIMEOUT_MS`: the longest one call of the service's own may take.
    pub timeout: Duration,
    /// `STORAGE_MAX_CONCURRENCY`: calls this instance may have in flight to the store.
    pub max_concurrency: usize,
    /// `STORAGE_PROBE_INTERVAL_MS`: how often the bucket is probed for health.
    pub probe_interval: Duration,
    /// `STORAGE_BREAKER_FAILURES`: consecutive failed calls that open the store's circuit
    /// breaker (default 3).
    pub breaker_failure_threshold: u32,
    /// `STORAGE_BREAKER_COOL_DOWN_MS`: how long it stays open before the probe tries the store
    /// again (default 5000).
    pub breaker_cool_down: Duration,
}

/// The longest upload URL lifetime accepted.
const MAX_UPLOAD_URL_TTL_SECS: u64 = 900;
/// The longest download URL lifetime accepted.
const MAX_DOWNLOAD_URL_TTL_SECS: u64 = 300;

impl Reader<'_> {
    /// `ATTACHMENT_*` and `STORAGE_*`: every knob is checked even without an endpoint.
    pub(super) fn attachments(&mut self) -> AttachmentSettings {
        let max_bytes: u64 = self.parsed("ATTACHMENT_MAX_BYTES", 25 * 1024 * 1024);
        if max_bytes == 0 {
            self.problems
                .push("ATTACHMENT_MAX_BYTES must be greater than 0".to_owned());
        }
        let direct_max_bytes: u64 = self.parsed("ATTACHMENT_DIRECT_MAX_BYTES", 1024 * 1024);
        if direct_max_bytes == 0 {
            self.problems
                .push("ATTACHMENT_DIRECT_MAX_BYTES must be greater than 0".to_owned());
        }
        let max_per_ticket = self.parsed("ATTACHMENT_MAX_PER_TICKET", 100);
        self.positive("ATTACHMENT_MAX_PER_TICKET", max_per_ticket);
        let upload_ttl: u64 =
            self.parsed("ATTACHMENT_UPLOAD_URL_TTL_SECS", MAX_UPLOAD_URL_TTL_SECS);
        if !(1..=MAX_UPLOAD_URL_TTL_SECS).contains(&upload_ttl) {
            self.problems.push(format!(
                "ATTACHMENT_UPLOAD_URL_TTL_SECS must be between 1 and {MAX_UPLOAD_URL_TTL_SECS}"
            ));
        }
        let download_ttl: u64 = self.parsed(
            "ATTACHMENT_DOWNLOAD_URL_TTL_SECS",
            MAX_DOWNLOAD_URL_TTL_SECS,
        );
        if !(1..=MAX_DOWNLOAD_URL_TTL_SECS).contains(&download_ttl) {
            self.problems.push(format!(
                "ATTACHMENT_DOWNLOAD_URL_TTL_SECS must be between 1 and {MAX_DOWNLOAD_URL_TTL_SECS}"
            ));
        }
        let sweep_interval = self.millis("ATTACHMENT_SWEEP_INTERVAL_MS", 60_000);
        let abandon_grace = Duration::from_secs(self.parsed("ATTACHMENT_ABANDON_GRACE_SECS", 3600));
        AttachmentSettings {
            storage: self.storage(),
            max_bytes,
            direct_max_bytes,
            max_per_ticket,
            upload_url_ttl: Duration::from_secs(upload_ttl),
            download_url_ttl: Duration::from_secs(download_ttl),
            sweep_interval,
            abandon_grace,
        }
    }

    pub(super) fn storage(&mut self) -> Option<StorageSettings> {
        let timeout = self.millis("STORAGE_TIMEOUT_MS", 5_000);
        let probe_interval = self.millis("STORAGE_PROBE_INTERVAL_MS", 2_000);
        let max_concurrency: u32 = self.parsed("STORAGE_MAX_CONCURRENCY", 32);
        self.positive("STORAGE_MAX_CONCURRENCY", max_concurrency);
        let breaker_failure_threshold = self.parsed("STORAGE_BREAKER_FAILURES", 3);
        self.positive("STORAGE_BREAKER_FAILURES", breaker_failure_threshold);
        let breaker_cool_down = self.millis("STORAGE_BREAKER_COOL_DOWN_MS", 5_000);
        let region = self
            .raw("STORAGE_REGION")
            .map_or_else(|| "us-east-1".to_owned(), |region| region.trim().to_owned());
        let public_endpoint = self
            .raw("STORAGE_PUBLIC_ENDPOINT")
            .and_then(|raw| self.storage_url("STORAGE_PUBLIC_ENDPOINT", &raw));
        let Some(raw_endpoint) = self.raw("STORAGE_ENDPOINT") else {
            for key in [
                "STORAGE_BUCKET",
                "STORAGE_ACCESS_KEY_ID",
                "STORAGE_SECRET_ACCESS_KEY",
            ] {
                if self.raw(key).is_some() {
                    self.problems
                        .push(format!("{key} is set but STORAGE_ENDPOINT is not"));
                }
            }
            return None;
        };
        let endpoint = self.storage_url("STORAGE_ENDPOINT", &raw_endpoint);
        let mut required = |key: &str| {
            let value = self.raw(key).map(|value| value.trim().to_owned());
            if value.is_none() {
                self.problems
                    .push(format!("{key} is not set (required with STORAGE_ENDPOINT)"));
            }
            value
        };
        let bucket = required("STORAGE_BUCKET");
        let access_key_id = required("STORAGE_ACCESS_KEY_ID");
        let secret = required("STORAGE_SECRET_ACCESS_KEY");
        if let Some(bucket) = &bucket
            && !(3..=63).contains(&bucket.len())
        {
            self.problems
                .push("STORAGE_BUCKET must be 3 to 63 characters".to_owned());
        }
        Some(StorageSettings {
            endpoint: endpoint?,
            public_endpoint,
            region,
            bucket: bucket?,
            access_key_id: access_key_id?,
            secret_access_key: SecretString::from(secret?),
            timeout,
            max_concurrency: usize::try_from(max_concurrency).unwrap_or(usize::MAX),
            probe_interval,
            breaker_failure_threshold,
            breaker_cool_down,
        })
    }

    pub(super) fn storage_url(&mut self, key: &str, raw: &str) -> Option<url::Url> {
        match url::Url::parse(raw.trim()) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some_and(|host| !host.is_empty())
                    && url.query().is_none() =>
            {
                Some(url)
            }
            Ok(_) => {
                self.problems.push(format!(
                    "{key} must be an http:// or https:// URL with a host and no query"
                ));
                None
            }
            Err(error) => {
                self.problems
                    .push(format!("{key} is not a valid URL: {error}"));
                None
            }
        }
    }
}
