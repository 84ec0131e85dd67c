//! SLA policies (issue 69, item 2; docs/sla.md, "SLA policies"): which tickets a policy applies
//! to (a condition in the filter language of ListTickets) and what it promises them (targets per
//! priority and metric, in calendar or business minutes), with the lead time of its warnings.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ticket_filter_expr::{CustomFieldCatalogue, FilterContext, Test, TicketFilterExpr};
use super::{InvalidValue, TicketPriority, UserId, bounded_text, single_line};

/// The most live policies an account may have.
pub const MAX_SLA_POLICIES_PER_ACCOUNT: i64 = 100;
/// The longest condition, as a view's filter.
const MAX_CONDITION_CHARS: usize = 2000;
/// The longest target, in minutes: a year.
const MAX_TARGET_MINUTES: u32 = 525_600;
/// The longest warning lead time, in minutes: a week.
const MAX_WARNING_MINUTES: u32 = 10_080;
/// The most targets a policy has: one per priority and metric.
pub const MAX_TARGETS: usize = 12;

/// What a target measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SlaMetric {
    /// From creation to the first public reply of an agent.
    FirstReply,
    /// From each reply of the requester to the next public reply of an agent.
    NextReply,
    /// From creation to solved, paused while pending or on hold.
    Resolution,
}

impl SlaMetric {
    pub const ALL: [Self; 3] = [Self::FirstReply, Self::NextReply, Self::Resolution];

    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstReply => "first_reply",
            Self::NextReply => "next_reply",
            Self::Resolution => "resolution",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|metric| metric.as_str() == raw)
            .ok_or_else(|| InvalidValue::new(format!("{raw:?} is not an SLA metric")))
    }
}

impl fmt::Display for SlaMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One promise: tickets of `priority` get `metric` within `minutes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlaTarget {
    pub priority: TicketPriority,
    pub metric: SlaMetric,
    minutes: u32,
    pub business_hours: bool,
}

impl SlaTarget {
    /// A target of 1 to [`MAX_TARGET_MINUTES`] minutes.
    pub fn new(
        priority: TicketPriority,
        metric: SlaMetric,
        minutes: i64,
        business_hours: bool,
    ) -> Result<Self, InvalidValue> {
        let minutes = u32::try_from(minutes)
            .ok()
            .filter(|minutes| (1..=MAX_TARGET_MINUTES).contains(minutes))
            .ok_or_else(|| {
                InvalidValue::new(format!(
                    "must be 1 to {MAX_TARGET_MINUTES} minutes (got {minutes})"
                ))
            })?;
        Ok(Self {
            priority,
            metric,
            minutes,
            business_hours,
        })
    }

    pub fn minutes(&self) -> u32 {
        self.minutes
    }
}

/// Which target of a list a problem is about, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetProblem {
    /// `None`: the list as a whole.
    pub index: Option<usize>,
    pub problem: InvalidValue,
}

/// A policy's targets: 1 to [`MAX_TARGETS`], at most one per priority and metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaTargets(Vec<SlaTarget>);

impl SlaTargets {
    pub fn parse(targets: Vec<SlaTarget>) -> Result<Self, TargetProblem> {
        if targets.is_empty() {
            return Err(TargetProblem {
                index: None,
                problem: InvalidValue::new(
                    "a policy needs at least one target (such as urgent first replies within 60 \
                     minutes)",
                ),
            });
        }
        let mut seen = BTreeSet::new();
        for (index, target) in targets.iter().enumerate() {
            if !seen.insert((target.priority.as_str(), target.metric)) {
                return Err(TargetProblem {
                    index: Some(index),
                    problem: InvalidValue::new(format!(
                        "repeats the {} target of {} tickets: one target per priority and metric",
                        target.metric,
                        target.priority.as_str()
                    )),
                });
            }
        }
        Ok(Self(targets))
    }

    pub fn as_slice(&self) -> &[SlaTarget] {
        &self.0
    }

    /// Whether a target is measured in business minutes (and so needs a schedule).
    pub fn any_in_business_hours(&self) -> bool {
        self.0.iter().any(|target| target.business_hours)
    }
}

/// A policy's condition: at most 2000 characters of the filter language, on what a ticket has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlaCondition(String);

impl SlaCondition {
    /// Checks `raw` for its form: `me` (a policy is run by no one) and times (a policy is about
    /// what a ticket has, not when it is read) are refused. Custom fields are checked against the
    /// account's catalogue by [`Self::over`] when the policy is saved.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.chars().count() > MAX_CONDITION_CHARS {
            return Err(InvalidValue::new(format!(
                "must be at most {MAX_CONDITION_CHARS} characters"
            )));
        }
        let condition = Self(raw.trim().to_owned());
        condition.over(&super::view::UntypedCustomFields)?;
        Ok(condition)
    }

    /// The condition over the account's custom `fields`.
    pub fn over(
        &self,
        fields: &dyn CustomFieldCatalogue,
    ) -> Result<TicketFilterExpr, InvalidValue> {
        let parse = |me| {
            TicketFilterExpr::parse_field(
                &self.0,
                &FilterContext {
                    me,
                    custom_fields: fields,
                },
            )
        };
        let expr = parse(Some(UserId::from_uuid(Uuid::nil())))?;
        // Read by no one, the same text fails only where it names `me`.
        if parse(None).is_err() {
            return Err(InvalidValue::new(
                "names `me`, which a policy cannot: it applies to every ticket, whoever reads it",
            ));
        }
        if let Some(condition) = expr
            .conditions
            .iter()
            .find(|condition| matches!(condition.test, Test::Time { .. }))
        {
            return Err(InvalidValue::new(format!(
                "at {}: {} is a time; a policy's condition names what a ticket has (status, \
                 priority, assignee, requester, group, tags, custom fields)",
                condition.at,
                condition.test.field()
            )));
        }
        Ok(expr)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it names a custom field (and so needs the account's catalogue).
    pub fn names_custom_fields(&self) -> bool {
        self.0.contains("custom_fields")
    }
}

/// A policy's name: 1 to 100 characters on one line, trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaPolicyName(String);

impl SlaPolicyName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, 1, 100).and_then(single_line).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a policy is for: at most 1000 characters, possibly empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlaPolicyDescription(String);

impl SlaPolicyDescription {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.trim().is_empty() && raw.chars().count() <= 1000 {
            return Ok(Self(String::new()));
        }
        bounded_text(raw, 0, 1000).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a policy is tried: 0 to 10000, lower first.
pub fn policy_position(raw: i64) -> Result<i32, InvalidValue> {
    i32::try_from(raw)
        .ok()
        .filter(|position| (0..=10_000).contains(position))
        .ok_or_else(|| InvalidValue::new(format!("must be 0 to 10000 (got {raw})")))
}

/// How long before a due time its warning is announced: 0 (none) to [`MAX_WARNING_MINUTES`].
pub fn warning_minutes(raw: i64) -> Result<u32, InvalidValue> {
    u32::try_from(raw)
        .ok()
        .filter(|minutes| *minutes <= MAX_WARNING_MINUTES)
        .ok_or_else(|| {
            InvalidValue::new(format!(
                "must be 0 (no warning) to {MAX_WARNING_MINUTES} minutes (got {raw})"
            ))
        })
}

/// The parts of a policy an admin writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaPolicyFields {
    pub name: SlaPolicyName,
    pub description: SlaPolicyDescription,
    pub position: i32,
    pub condition: SlaCondition,
    pub schedule_id: Option<Uuid>,
    pub targets: SlaTargets,
    pub warning_minutes: u32,
}

impl SlaPolicyFields {
    /// Refuses business-hours targets without a schedule, naming `schedule_id`.
    pub fn check_schedule(&self) -> Result<(), InvalidValue> {
        if self.schedule_id.is_none() && self.targets.any_in_business_hours() {
            return Err(InvalidValue::new(
                "is required: a target is in business hours, measured on a schedule's hours",
            ));
        }
        Ok(())
    }
}

/// A stored policy, as its latest revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaPolicy {
    pub id: Uuid,
    pub fields: SlaPolicyFields,
    pub revision: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(priority: TicketPriority, metric: SlaMetric) -> SlaTarget {
        SlaTarget::new(priority, metric, 60, false).unwrap()
    }

    #[test]
    fn a_target_is_one_minute_to_a_year() {
        let make =
            |minutes| SlaTarget::new(TicketPriority::Urgent, SlaMetric::FirstReply, minutes, true);
        assert!(make(0).is_err());
        assert_eq!(make(1).unwrap().minutes(), 1);
        assert_eq!(make(525_600).unwrap().minutes(), 525_600);
        assert!(make(525_601).is_err());
        assert!(make(-1).is_err());
    }

    #[test]
    fn targets_are_one_per_priority_and_metric_and_the_repeat_is_named() {
        assert_eq!(SlaTargets::parse(Vec::new()).unwrap_err().index, None);
        let repeated = SlaTargets::parse(vec![
            target(TicketPriority::Urgent, SlaMetric::FirstReply),
            target(TicketPriority::Urgent, SlaMetric::Resolution),
            target(TicketPriority::Urgent, SlaMetric::FirstReply),
        ])
        .unwrap_err();
        assert_eq!(repeated.index, Some(2));
        let every: Vec<SlaTarget> = TicketPriority::ALL
            .iter()
            .flat_map(|priority| SlaMetric::ALL.map(|metric| target(*priority, metric)))
            .collect();
        assert_eq!(every.len(), MAX_TARGETS);
        assert!(SlaTargets::parse(every).is_ok());
    }

    #[test]
    fn a_condition_names_what_a_ticket_has_never_me_nor_a_time() {
        assert!(SlaCondition::parse("").is_ok());
        assert!(SlaCondition::parse("priority = urgent AND tags: vip").is_ok());
        assert!(SlaCondition::parse("custom_fields.plan = \"enterprise\"").is_ok());
        let me = SlaCondition::parse("assignee = me").unwrap_err();
        assert!(me.description().contains("`me`"), "{me}");
        let time = SlaCondition::parse("priority = high AND create_time > now(-1h)").unwrap_err();
        assert!(
            time.description().contains("create_time is a time"),
            "{time}"
        );
        assert!(SlaCondition::parse("priority = ").is_err());
        assert!(SlaCondition::parse(&"x".repeat(2001)).is_err());
    }

    #[test]
    fn business_hours_targets_need_a_schedule() {
        let fields = |business_hours, schedule_id| SlaPolicyFields {
            name: SlaPolicyName::parse("Standard").unwrap(),
            description: SlaPolicyDescription::default(),
            position: 0,
            condition: SlaCondition::default(),
            schedule_id,
            targets: SlaTargets::parse(vec![
                SlaTarget::new(
                    TicketPriority::Normal,
                    SlaMetric::Resolution,
                    480,
                    business_hours,
                )
                .unwrap(),
            ])
            .unwrap(),
            warning_minutes: 30,
        };
        assert!(fields(false, None).check_schedule().is_ok());
        assert!(fields(true, None).check_schedule().is_err());
        assert!(fields(true, Some(Uuid::now_v7())).check_schedule().is_ok());
    }
}
