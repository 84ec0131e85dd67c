//! Groups of agents and their members as the API shows them.

use super::{optional_timestamp, timestamp};
use crate::domain::{Group, GroupMember};
use crate::wire::proto::v1;

impl From<&Group> for v1::Group {
    fn from(group: &Group) -> Self {
        v1::Group {
            id: group.id.to_string(),
            name: group.name.as_str().to_owned(),
            description: group.description.as_str().to_owned(),
            member_count: i32::try_from(group.member_count).unwrap_or(i32::MAX),
            create_time: Some(timestamp(group.created_at)),
            update_time: Some(timestamp(group.updated_at)),
            delete_time: optional_timestamp(group.deleted_at),
        }
    }
}

impl From<&GroupMember> for v1::GroupMember {
    fn from(member: &GroupMember) -> Self {
        v1::GroupMember {
            group_id: member.group_id.to_string(),
            user_id: member.user_id.to_string(),
            create_time: Some(timestamp(member.created_at)),
        }
    }
}
