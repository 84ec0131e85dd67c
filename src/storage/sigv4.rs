//! AWS Signature Version 4 for S3, query-string form (presigned URLs): the URL carries the
//! algorithm, the credential scope, the time, the lifetime, the names of the signed headers and
//! the signature, and the store refuses a request whose method, path, query or signed headers
//! differ, or that arrives after the lifetime. The payload is `UNSIGNED-PAYLOAD`: the body is
//! bound through the signed `content-length` and `x-amz-checksum-sha256` headers instead.
//!
//! Written from the AWS specification ("Authenticating Requests: Using Query Parameters") and
//! checked against its published example in the tests below; docs/attachments.md says why the
//! service signs itself rather than through an SDK.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// What S3 leaves unescaped in a canonical URI or query (RFC 3986's unreserved characters).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Who signs, and for which region.
#[derive(Clone)]
pub struct SigningKey {
    pub access_key_id: String,
    pub secret_access_key: secrecy::SecretString,
    pub region: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// One request to presign.
#[derive(Debug)]
pub struct Presign<'a> {
    pub method: &'a str,
    /// The full URL without the signing parameters (it may carry other query parameters, such
    /// as `response-content-disposition`).
    pub url: &'a url::Url,
    /// Headers the client must send exactly (names lower case), besides `host`.
    pub headers: &'a [(&'a str, String)],
    pub now: DateTime<Utc>,
    pub expires_in: Duration,
}

/// `request` presigned by `key`: the URL to send, with `X-Amz-Signature` last.
pub fn presign(key: &SigningKey, request: &Presign<'_>) -> url::Url {
    let amz_date = request.now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = request.now.format("%Y%m%d").to_string();
    let scope = format!("{date}/{}/s3/aws4_request", key.region);

    let host = match request.url.port() {
        Some(port) => format!("{}:{port}", request.url.host_str().unwrap_or_default()),
        None => request.url.host_str().unwrap_or_default().to_owned(),
    };
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    headers.push(("host".to_owned(), host));
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");

    let mut query: Vec<(String, String)> = request
        .url
        .query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    query.extend([
        ("X-Amz-Algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned()),
        (
            "X-Amz-Credential".to_owned(),
            format!("{}/{scope}", key.access_key_id),
        ),
        ("X-Amz-Date".to_owned(), amz_date.clone()),
        (
            "X-Amz-Expires".to_owned(),
            request.expires_in.as_secs().to_string(),
        ),
        ("X-Amz-SignedHeaders".to_owned(), signed_headers.clone()),
    ]);
    let mut encoded: Vec<(String, String)> = query
        .iter()
        .map(|(name, value)| (encode(name), encode(value)))
        .collect();
    encoded.sort();
    let canonical_query = encoded
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&");

    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let canonical_request = format!(
        "{}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\nUNSIGNED-PAYLOAD",
        request.method,
        canonical_uri(request.url.path()),
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let signing_key = [date.as_str(), key.region.as_str(), "s3", "aws4_request"]
        .iter()
        .fold(
            format!(
                "AWS4{}",
                secrecy::ExposeSecret::expose_secret(&key.secret_access_key)
            )
            .into_bytes(),
            |key, part| hmac(&key, part.as_bytes()),
        );
    let signature = hex::encode(hmac(&signing_key, string_to_sign.as_bytes()));

    let mut url = request.url.clone();
    url.set_query(Some(&format!(
        "{canonical_query}&X-Amz-Signature={signature}"
    )));
    url
}

/// The path as S3 canonicalises it: each segment percent-encoded once, slashes kept. The URL
/// crate already encoded what a URL cannot hold, so it is decoded first.
fn canonical_uri(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
            encode(&decoded)
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of AWS's "Authenticating Requests: Using Query Parameters" page.
    #[test]
    fn the_published_example_is_signed_as_aws_signs_it() {
        let key = SigningKey {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".to_owned(),
        };
        let url = url::Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap();
        let signed = presign(
            &key,
            &Presign {
                method: "GET",
                url: &url,
                headers: &[],
                now: "2013-05-24T00:00:00Z".parse().unwrap(),
                expires_in: Duration::from_secs(86400),
            },
        );
        assert_eq!(
            signed
                .query_pairs()
                .find(|(name, _)| name == "X-Amz-Signature")
                .unwrap()
                .1,
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn a_path_is_encoded_once_per_segment() {
        assert_eq!(canonical_uri("/b/a%20b/c~d"), "/b/a%20b/c~d");
        assert_eq!(canonical_uri("/b/%C3%A9"), "/b/%C3%A9");
    }
}
