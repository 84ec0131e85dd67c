//! SLA policies as the API shows them, and their enums as requests send them.

use super::{optional_timestamp, timestamp};
use crate::domain::{InvalidValue, SlaMetric, SlaPolicy, TicketPriority};
use crate::wire::proto::v1;

impl From<SlaMetric> for v1::SlaMetric {
    fn from(metric: SlaMetric) -> Self {
        match metric {
            SlaMetric::FirstReply => v1::SlaMetric::FirstReply,
            SlaMetric::NextReply => v1::SlaMetric::NextReply,
            SlaMetric::Resolution => v1::SlaMetric::Resolution,
        }
    }
}

/// A metric as a target names it: UNSPECIFIED is refused, as is a number outside the enum.
impl TryFrom<i32> for SlaMetric {
    type Error = InvalidValue;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match v1::SlaMetric::try_from(value) {
            Ok(v1::SlaMetric::FirstReply) => Ok(SlaMetric::FirstReply),
            Ok(v1::SlaMetric::NextReply) => Ok(SlaMetric::NextReply),
            Ok(v1::SlaMetric::Resolution) => Ok(SlaMetric::Resolution),
            Ok(v1::SlaMetric::Unspecified) => Err(InvalidValue::new(
                "is required: SLA_METRIC_FIRST_REPLY, SLA_METRIC_NEXT_REPLY or SLA_METRIC_RESOLUTION",
            )),
            Err(_) => Err(InvalidValue::new(format!("{value} is not an SlaMetric"))),
        }
    }
}

/// A target's priority: UNSPECIFIED names no tickets, so it is refused.
pub fn target_priority(value: i32) -> Result<TicketPriority, InvalidValue> {
    if value == i32::from(v1::TicketPriority::Unspecified) {
        return Err(InvalidValue::new(
            "is required: the priority of the tickets the target is for",
        ));
    }
    TicketPriority::try_from(value)
}

impl From<&SlaPolicy> for v1::SlaPolicy {
    fn from(policy: &SlaPolicy) -> Self {
        let fields = &policy.fields;
        v1::SlaPolicy {
            id: policy.id.to_string(),
            name: fields.name.as_str().to_owned(),
            description: fields.description.as_str().to_owned(),
            position: fields.position,
            filter: fields.condition.as_str().to_owned(),
            schedule_id: fields
                .schedule_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            targets: fields
                .targets
                .as_slice()
                .iter()
                .map(|target| v1::SlaTarget {
                    priority: v1::TicketPriority::from(target.priority).into(),
                    metric: v1::SlaMetric::from(target.metric).into(),
                    minutes: i32::try_from(target.minutes()).unwrap_or(i32::MAX),
                    business_hours: target.business_hours,
                })
                .collect(),
            warning_minutes: i32::try_from(fields.warning_minutes).unwrap_or(i32::MAX),
            revision: policy.revision,
            create_time: Some(timestamp(policy.created_at)),
            update_time: Some(timestamp(policy.updated_at)),
            delete_time: optional_timestamp(policy.deleted_at),
        }
    }
}
