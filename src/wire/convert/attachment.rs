//! Attachments as the API shows them.

use super::{optional_timestamp, timestamp};
use crate::domain::{Actor, Attachment, AttachmentState};
use crate::wire::proto::v1;

impl From<Attachment> for v1::Attachment {
    fn from(attachment: Attachment) -> Self {
        v1::Attachment {
            id: attachment.id.to_string(),
            ticket_id: attachment.ticket_id.to_string(),
            comment_id: attachment
                .comment_id
                .map(|comment| comment.to_string())
                .unwrap_or_default(),
            filename: attachment.filename.as_str().to_owned(),
            content_type: attachment.content_type.as_str().to_owned(),
            size_bytes: i64::try_from(attachment.size_bytes).unwrap_or(i64::MAX),
            sha256: attachment.sha256.to_string(),
            state: match attachment.state {
                AttachmentState::Pending => v1::AttachmentState::Pending,
                AttachmentState::Ready => v1::AttachmentState::Ready,
            }
            .into(),
            uploader_id: match attachment.uploader {
                Actor::User(user) => user.to_string(),
                Actor::ApiKey(_) => String::new(),
            },
            create_time: Some(timestamp(attachment.created_at)),
            complete_time: optional_timestamp(attachment.completed_at),
        }
    }
}
