//! Attachments: the cleaned file name, the allowed content types and what a file's first bytes
//! must look like for each, the declared SHA-256, and how an uploaded object can differ from what
//! its upload declared (docs/attachments.md).

use std::fmt;

use super::InvalidValue;

/// A stored attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub id: super::AttachmentId,
    pub account_id: super::AccountId,
    pub ticket_id: super::TicketId,
    pub comment_id: Option<super::CommentId>,
    /// Attached to an internal note: never shown to customers.
    pub internal: bool,
    pub uploader: super::Actor,
    pub filename: Filename,
    pub content_type: AttachmentContentType,
    pub size_bytes: u64,
    pub sha256: Sha256Digest,
    /// Where the bytes are in the bucket: `<account>/<random>`.
    pub object_key: String,
    pub state: AttachmentState,
    pub upload_expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The longest file name kept, in characters (the extension is kept when cutting).
pub(super) const MAX_FILENAME_CHARS: usize = 200;

/// A file name as shown and offered for download: no path, no control or bidirectional
/// characters, no leading or trailing dots or spaces, at most [`MAX_FILENAME_CHARS`] characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filename(String);

impl Filename {
    /// Cleans `raw`: keeps what follows the last `/` or `\`, drops control, bidirectional and
    /// other invisible formatting characters, trims spaces and dots, and shortens it keeping the
    /// extension. Refused only when nothing is left.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
        let cleaned: String = base
            .chars()
            .filter(|c| !c.is_control() && !is_format_character(*c))
            .collect();
        let trimmed = cleaned.trim_matches(|c: char| c.is_whitespace() || c == '.');
        if trimmed.is_empty() {
            return Err(InvalidValue::new(
                "must name a file (after removing any path, control and bidirectional characters)",
            ));
        }
        let chars: Vec<char> = trimmed.chars().collect();
        if chars.len() <= MAX_FILENAME_CHARS {
            return Ok(Self(trimmed.to_owned()));
        }
        let extension: Vec<char> = match trimmed.rfind('.') {
            Some(dot) if trimmed.len() - dot <= 16 => trimmed[dot..].chars().collect(),
            Some(_) | None => Vec::new(),
        };
        let keep = MAX_FILENAME_CHARS - extension.len();
        Ok(Self(
            chars[..keep]
                .iter()
                .chain(extension.iter())
                .collect::<String>(),
        ))
    }

    /// A name already stored (cleaned when it was written).
    pub fn from_stored(name: String) -> Self {
        Self(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Bidirectional controls and other invisible formatting characters (Unicode category Cf, the
/// ones that matter in a file name): U+202E makes `evil<U+202E>gpj.exe`
/// read as `evilexe.jpg`.
fn is_format_character(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// The content types an attachment may have, with what the first bytes must be.
const ALLOWED: &[&str] = &[
    "application/pdf",
    "application/zip",
    "image/gif",
    "image/jpeg",
    "image/png",
    "image/webp",
    "text/csv",
    "text/plain",
];

/// An allowed content type, as its bare lower-case essence (`image/png`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentContentType(String);

impl AttachmentContentType {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let essence = raw.trim().to_ascii_lowercase();
        if ALLOWED.contains(&essence.as_str()) {
            Ok(Self(essence))
        } else {
            Err(InvalidValue::new(format!(
                "must be one of: {}",
                ALLOWED.join(", ")
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `head` (a file's first bytes) looks like `content_type`: the magic numbers of the
/// binary formats; for text, UTF-8 without NUL that does not open as HTML, SVG or XML markup
/// (a browser sniffing it could otherwise render it).
pub fn sniff_matches(content_type: &AttachmentContentType, head: &[u8]) -> bool {
    match content_type.as_str() {
        "application/pdf" => head.starts_with(b"%PDF-"),
        "application/zip" => head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06"),
        "image/gif" => head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a"),
        "image/jpeg" => head.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/png" => head.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/webp" => head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP",
        _ => is_plain_text(head),
    }
}

fn is_plain_text(head: &[u8]) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // The head may end inside a character.
        Err(error) if error.error_len().is_none() => {
            std::str::from_utf8(&head[..error.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    if text.contains('\0') {
        return false;
    }
    let lowered = text
        .trim_start_matches('\u{FEFF}')
        .trim_start()
        .to_lowercase();
    ![
        "<!doctype",
        "<html",
        "<head",
        "<body",
        "<script",
        "<svg",
        "<?xml",
        "<iframe",
    ]
    .iter()
    .any(|marker| lowered.starts_with(marker))
}

/// A SHA-256 digest, sent as 64 hexadecimal digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let mut bytes = [0u8; 32];
        match hex::decode_to_slice(raw.trim(), &mut bytes) {
            Ok(()) => Ok(Self(bytes)),
            Err(_) => Err(InvalidValue::new(
                "must be the file's SHA-256 as 64 hexadecimal digits",
            )),
        }
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Where an attachment is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachmentState {
    /// Created; its file is being uploaded (or was never uploaded).
    Pending,
    /// Its file was checked: visible and downloadable.
    Ready,
}

impl AttachmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "pending" => Ok(Self::Pending),
            "ready" => Ok(Self::Ready),
            other => Err(InvalidValue::new(format!(
                "{other:?} is not an attachment state"
            ))),
        }
    }
}

/// One way an uploaded object differs from what its upload declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadDifference {
    Size {
        declared: u64,
        stored: u64,
    },
    ContentType {
        declared: String,
        stored: String,
    },
    Checksum,
    /// The first bytes are not those of the declared type (an HTML page named `.png`).
    Content {
        declared: String,
    },
}

impl UploadDifference {
    /// The request field the difference is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Size { .. } => "size_bytes",
            Self::ContentType { .. } => "content_type",
            Self::Checksum => "sha256",
            Self::Content { .. } => "content",
        }
    }

    pub fn description(&self) -> String {
        match self {
            Self::Size { declared, stored } => {
                format!("declared {declared} bytes, the stored object has {stored}")
            }
            Self::ContentType { declared, stored } => {
                format!("declared {declared}, the stored object is {stored}")
            }
            Self::Checksum => "the stored object's SHA-256 is not the declared one".to_owned(),
            Self::Content { declared } => {
                format!("the file's first bytes are not those of {declared}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_loses_its_path_and_invisible_characters() {
        assert_eq!(
            Filename::parse("../../etc/passwd").unwrap().as_str(),
            "passwd"
        );
        assert_eq!(
            Filename::parse("C:\\Users\\me\\report.pdf")
                .unwrap()
                .as_str(),
            "report.pdf"
        );
        assert_eq!(
            Filename::parse("evil\u{202E}gpj.exe").unwrap().as_str(),
            "evilgpj.exe"
        );
        assert_eq!(
            Filename::parse("a\u{0007}b\n.txt").unwrap().as_str(),
            "ab.txt"
        );
        assert!(Filename::parse(" ../ .. ").is_err());
        assert!(Filename::parse("\u{200B}").is_err());
    }

    #[test]
    fn a_long_file_name_is_cut_keeping_its_extension() {
        let name = Filename::parse(&format!("{}.png", "x".repeat(500))).unwrap();
        assert_eq!(name.as_str().chars().count(), MAX_FILENAME_CHARS);
        assert!(name.as_str().ends_with("x.png"));
    }

    #[test]
    fn only_listed_content_types_are_allowed() {
        assert_eq!(
            AttachmentContentType::parse(" Image/PNG ")
                .unwrap()
                .as_str(),
            "image/png"
        );
        assert!(AttachmentContentType::parse("text/html").is_err());
        assert!(AttachmentContentType::parse("image/svg+xml").is_err());
    }

    #[test]
    fn html_is_neither_a_png_nor_plain_text() {
        let png = AttachmentContentType::parse("image/png").unwrap();
        let text = AttachmentContentType::parse("text/plain").unwrap();
        let html = b"<!DOCTYPE html><script>alert(1)</script>";
        assert!(!sniff_matches(&png, html));
        assert!(!sniff_matches(&text, html));
        assert!(!sniff_matches(&text, b"  <svg onload=alert(1)>"));
        assert!(sniff_matches(&png, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"));
        assert!(sniff_matches(&text, "héllo, a < b".as_bytes()));
        assert!(sniff_matches(&text, &"é".as_bytes()[..1]));
        assert!(!sniff_matches(&text, b"bin\0ary"));
    }

    #[test]
    fn a_digest_is_64_hex_digits() {
        let digest = Sha256Digest::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(digest.to_string(), "ab".repeat(32));
        assert!(Sha256Digest::parse("abc").is_err());
        assert!(Sha256Digest::parse(&"zz".repeat(32)).is_err());
    }
}
