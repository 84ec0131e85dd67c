//! The rules the protos declare with `buf.validate` are the rules the service enforces. For
//! every annotated field of every request (nested messages included), the test derives from the
//! annotation a value at the declared limit and one just past it, puts each into a request that
//! is otherwise valid, and sends it to the real service: the first must not be refused for that
//! field, the second must be INVALID_ARGUMENT with that field named in BadRequest. A new
//! annotation is covered without a line here; an RPC with rules and no valid request to start
//! from fails the test until it has one. The same cases then go through protovalidate in the two
//! clients that check requests before sending them, a Python client (PyPI `protovalidate`) and
//! the generated TypeScript client (`clients/typescript/validate.ts`, `@bufbuild/protovalidate`),
//! and each must agree on every case.

use std::collections::BTreeMap;

use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};
use supportdesk::domain::Email;
use supportdesk::wire::proto::{self, v1};
use tonic::Code;

use crate::support::attachments::upload_request;
use crate::support::typescript_client::TypescriptClient;
use crate::support::{
    RawBytes, TestApp, TestUser, details, raw_client, repository_root, tool, valid_create_request,
};

/// One annotated field, at its dotted proto path from the request.
struct DeclaredRule {
    path: String,
    field: FieldDescriptor,
    rules: DynamicMessage,
}

/// One value to try, and whether the declaration accepts it.
struct Case {
    what: String,
    value: Option<Value>,
    accepted: bool,
    /// Where in the field the value goes: the field itself, or (a CEL rule of a resource about
    /// one of its fields) that field of it, the rest of the resource left valid.
    within: Option<String>,
}

/// Fields an RPC's request carries but does not read (a resource message shared with other
/// RPCs): the declaration still holds for them where they are read, and a client that checks it
/// here is only stricter than the service.
const NOT_READ: &[(&str, &str, &str)] = &[
    (
        "UpdateUser",
        "user.email",
        "an address cannot be changed by UpdateUser",
    ),
    (
        "UpdateTicket",
        "ticket.requester_email",
        "a ticket's requester cannot be changed",
    ),
    (
        "UpdateTicket",
        "ticket.assignee_id",
        "a ticket is assigned by AssignTicket",
    ),
    (
        "UpdateTicket",
        "ticket.group_id",
        "a ticket is assigned to a group by AssignTicket",
    ),
    (
        "UpdateCustomField",
        "custom_field.key",
        "a field's key never changes",
    ),
    (
        "UpdateCustomField",
        "custom_field.kind",
        "a field's kind never changes",
    ),
    (
        "UpdateCustomField",
        "custom_field.choices",
        "the fixture is a text field; CreateCustomField's cases try the options",
    ),
    (
        "UpdateCustomField",
        "custom_field.pattern",
        "the fixture is a text field; CreateCustomField's cases try the pattern",
    ),
];

/// Rules whose value at the limit this test cannot build from the rule alone, each tried instead by
/// the behaviour test it names: a list of messages (this test repeats one item, and equal
/// intervals overlap), and a time zone's length (no zone of the tz database is 64 characters
/// long, so a name at the limit is refused as unknown, for what it says, not for its length).
const TRIED_BY_BEHAVIOUR_TESTS: &[(&str, &str, &str)] = &[
    (
        "CreateSchedule",
        "schedule.time_zone",
        "sla::schedules::the_bounds_of_a_schedule_hold_at_their_limits",
    ),
    (
        "CreateSchedule",
        "schedule.intervals",
        "sla::schedules::the_bounds_of_a_schedule_hold_at_their_limits",
    ),
    (
        "CreateSchedule",
        "schedule.holidays",
        "sla::schedules::the_bounds_of_a_schedule_hold_at_their_limits",
    ),
    (
        "UpdateSchedule",
        "schedule.time_zone",
        "the same parse as CreateSchedule's, of the parts the mask names",
    ),
    (
        "UpdateSchedule",
        "schedule.intervals",
        "the same parse as CreateSchedule's, of the parts the mask names",
    ),
    (
        "UpdateSchedule",
        "schedule.holidays",
        "the same parse as CreateSchedule's, of the parts the mask names",
    ),
    (
        "CreateSlaPolicy",
        "sla_policy.targets",
        "sla::policies::a_policy_takes_twelve_targets_one_per_priority_and_metric",
    ),
    (
        "UpdateSlaPolicy",
        "sla_policy.targets",
        "the same parse as CreateSlaPolicy's, when the mask names targets",
    ),
    (
        "ComputeDueTime",
        "schedule.time_zone",
        "the same parse as CreateSchedule's",
    ),
    (
        "ComputeDueTime",
        "schedule.intervals",
        "the same parse as CreateSchedule's",
    ),
    (
        "ComputeDueTime",
        "schedule.holidays",
        "the same parse as CreateSchedule's",
    ),
];

/// Each pattern the protos declare, with a value it accepts and one it refuses.
const PATTERN_SAMPLES: &[(&str, &str, &str)] = &[
    (r"[^\x{09}-\x{0D}\x{85}\p{Z}]", "x", " \t\u{3000}"),
    ("^[!-~]{1,255}$", "evt_1", "evt 1"),
    ("^[a-z][a-z0-9_]*$", "plan_2", "2plan"),
    (
        Email::PATTERN,
        " Jane.Doe+x@Example.COM",
        "jane..doe@example.com",
    ),
    (
        r"^[\x{09}-\x{0D}\x{85}\p{Z}]*[a-z0-9][a-z0-9-]{0,62}[\x{09}-\x{0D}\x{85}\p{Z}]*$",
        " acme-2\u{3000}",
        "-acme",
    ),
    (
        r"^[\x{09}-\x{0D}\x{85}\p{Z}]*[0-9a-fA-F]{64}[\x{09}-\x{0D}\x{85}\p{Z}]*$",
        " 00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\t",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef",
    ),
    (
        r"^[\x{09}-\x{0D}\x{85}\p{Z}]*pm_[A-Za-z0-9_]{1,250}[\x{09}-\x{0D}\x{85}\p{Z}]*$",
        " pm_card_visa ",
        "pm_card-visa",
    ),
    ("^([0-9]{1,18}\\.[0-9]{1,18})?$", "123.456", "yesterday"),
    (
        "^(evt_[0-9a-fA-F]{32})?$",
        "evt_0123456789ABCDEF0123456789abcdef",
        "evt_nothex",
    ),
    (
        r"^[\x{09}-\x{0D}\x{85}\p{Z}]*((create_time|createTime|update_time|updateTime)([\x{09}-\x{0D}\x{85}\p{Z}]+(asc|desc))?)?[\x{09}-\x{0D}\x{85}\p{Z}]*$",
        " updateTime\u{3000}asc ",
        "create_time ascending",
    ),
];

/// The rules [`cases`] derives a value at the limit and one past it for, as [`rule_names`]
/// names them (`ignore`, which only lets the empty value through, is tried beside the others).
const TRIED: &[&str] = &[
    "required",
    "string.min_len",
    "string.max_len",
    "string.pattern",
    "string.uuid",
    "int32.gte",
    "int32.gt",
    "int32.lte",
    "int64.gte",
    "int64.gt",
    "enum.defined_only",
    "enum.in",
    "enum.not_in",
    "repeated.items.enum",
    "repeated.items.string",
    "repeated.min_items",
    "repeated.max_items",
    "timestamp.gte",
    "timestamp.lte",
    "timestamp.lt",
];

/// Each CEL rule the protos declare (by its id), with values it accepts and values it refuses: a
/// string field's text, or a field mask's paths separated by commas (`""`: a mask naming none).
const CEL_SAMPLES: &[(&str, &[&str], &[&str])] = &[
    (
        "email.local_part",
        // 64 characters before the @, and 65.
        &["llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll@example.com"],
        &["lllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll@example.com"],
    ),
    (
        "update_ticket.update_mask",
        &["subject,priority", "*"],
        &["", "status", "subject,assignee_id", "subject.text"],
    ),
    (
        "assign_ticket.group_id",
        &["", "{existing}", "{EXISTING}"],
        &[
            "ticket-1",
            " {existing}",
            "urn:uuid:{existing}",
            "{existing}0",
        ],
    ),
    (
        "update_user.update_mask",
        &["display_name"],
        &["", "email", "display_name,password"],
    ),
    (
        "update_ticket.ticket_id",
        &["id={existing}", "id={EXISTING}"],
        &["id=", "id=ticket-1", "id= {existing}", "id={{existing}}"],
    ),
    (
        "update_user.user_id",
        &["id={existing}", "id={EXISTING}"],
        &[
            "id=",
            "id=user-1",
            "id={existing} ",
            "id=urn:uuid:{existing}",
        ],
    ),
    (
        "update_webhook_endpoint.id",
        &["id={existing}", "id={EXISTING}"],
        &["id=", "id=endpoint-1", "id= {existing}"],
    ),
    (
        "update_webhook_endpoint.update_mask",
        &["url,description", "disabled"],
        &["", "secret", "url,state"],
    ),
    (
        "update_group.id",
        &["id={existing}", "id={EXISTING}"],
        &["id=", "id=group-1", "id= {existing}"],
    ),
    (
        "update_group.update_mask",
        &["name,description", "description"],
        &["", "member_count", "name,delete_time"],
    ),
    (
        "update_schedule.id",
        &["id={existing}", "id={EXISTING}"],
        &["id=", "id=schedule-1", "id= {existing}"],
    ),
    (
        "update_schedule.update_mask",
        &["name,time_zone,intervals,holidays", "time_zone"],
        &["", "revision", "name,create_time"],
    ),
    (
        "update_sla_policy.id",
        &["id={existing}", "id={EXISTING}"],
        &["id=", "id=policy-1", "id= {existing}"],
    ),
    (
        "update_sla_policy.update_mask",
        &[
            "name,description,position,filter,schedule_id,targets,warning_minutes",
            "warning_minutes",
        ],
        &["", "revision", "name,create_time"],
    ),
    (
        "update_view.id",
        &["id={existing}", "id={EXISTING}"],
        &["id=", "id=view-1", "id= {existing}"],
    ),
    (
        "update_view.update_mask",
        &["name,filter,order_by,read_mask,position", "position"],
        &["", "scope", "name,owner_id"],
    ),
    (
        "update_custom_field.id",
        &["id={existing}", "id={EXISTING}"],
        &["id=", "id=field-1", "id= {existing}"],
    ),
    (
        "update_custom_field.update_mask",
        &["title,description", "position"],
        &["", "kind", "title,key"],
    ),
    (
        "update_notification_settings.update_mask",
        &["comment_notifications"],
        &["", "email_notifications"],
    ),
    (
        "charge.amount",
        &[
            "amount_minor=1,currency_code=USD",
            "amount_minor=99999999,currency_code=jpy",
            "amount_minor=1230,currency_code=KWD",
        ],
        &[
            "amount_minor=0,currency_code=USD",
            "amount_minor=-1250,currency_code=USD",
            "amount_minor=100000000,currency_code=JPY",
            "amount_minor=1235,currency_code=kwd",
            "amount_minor=1250,currency_code=Usd",
            "amount_minor=1250,currency_code=XTS",
            "amount_minor=1250,currency_code=",
        ],
    ),
    (
        "refund_charge.amount",
        &[
            "amount_minor=1,currency_code=usd",
            "amount_minor=1235,currency_code=KWD",
        ],
        &[
            "amount_minor=0,currency_code=USD",
            "amount_minor=-1,currency_code=USD",
            "amount_minor=100,currency_code=US",
        ],
    ),
    (
        "create_user.role",
        &["role=1", "role=2", "role=3"],
        &["role=0", "role=4"],
    ),
];

/// A CEL sample (`CEL_SAMPLES`) as a value of `field`: a string field's text; for a message of
/// ours, `name=value` sets that field of it, the rest left valid (`{existing}` standing for the id
/// the request names), and `name=value,name=value` is the whole message; for a field mask, its
/// paths.
fn cel_sample(
    field: &FieldDescriptor,
    sample: &str,
    existing: Option<uuid::Uuid>,
) -> (Option<String>, Value) {
    let kind = field.kind();
    if kind == Kind::String {
        let text = match existing {
            Some(existing) => sample
                .replace("{existing}", &existing.to_string())
                .replace("{EXISTING}", &existing.to_string().to_uppercase()),
            None => sample.to_owned(),
        };
        return (None, Value::String(text));
    }
    let Kind::Message(message) = kind else {
        panic!("{}: no CEL samples for a field of {kind:?}", field.name());
    };
    if message.package_name() == "supportdesk.v1" {
        let typed = |name: &str, text: &str| {
            let inner = message
                .get_field_by_name(name)
                .unwrap_or_else(|| panic!("{}: no field {name}", message.full_name()));
            let text = if text.contains("{existing}") || text.contains("{EXISTING}") {
                let existing = existing
                    .unwrap_or_else(|| panic!("{}: no existing {name} to name", field.name()));
                text.replace("{existing}", &existing.to_string())
                    .replace("{EXISTING}", &existing.to_string().to_uppercase())
            } else {
                text.to_owned()
            };
            let number = || -> i64 { text.parse().expect("a number") };
            let kind = inner.kind();
            if kind == Kind::String {
                Value::String(text)
            } else if kind == Kind::Int64 {
                Value::I64(number())
            } else if kind == Kind::Int32 {
                Value::I32(i32::try_from(number()).expect("an int32"))
            } else if let Kind::Enum(_) = kind {
                Value::EnumNumber(i32::try_from(number()).expect("an enum number"))
            } else {
                panic!("{}: no CEL samples for a {kind:?}", inner.full_name())
            }
        };
        let pairs: Vec<(&str, &str)> = sample
            .split(',')
            .map(|pair| {
                pair.split_once('=')
                    .unwrap_or_else(|| panic!("{}: a sample `field=value`", field.name()))
            })
            .collect();
        if let [(inner, text)] = pairs.as_slice() {
            return (Some((*inner).to_owned()), typed(inner, text));
        }
        let mut value = DynamicMessage::new(message.clone());
        for (inner, text) in pairs {
            value.set_field_by_name(inner, typed(inner, text));
        }
        return (None, Value::Message(value));
    }
    assert_eq!(
        message.full_name(),
        "google.protobuf.FieldMask",
        "{}: no CEL samples for a field of this message",
        field.name()
    );
    let mut value = DynamicMessage::new(message);
    let paths = sample
        .split(',')
        .filter(|path| !path.is_empty())
        .map(|path| Value::String(path.to_owned()))
        .collect();
    value.set_field_by_name("paths", Value::List(paths));
    (None, Value::Message(value))
}

/// Fields whose rules are skipped when empty (`IGNORE_IF_ZERO_VALUE`) because their message is
/// shared with an RPC that does not read them, and which this RPC requires anyway, with why: the
/// declaration cannot say "required here only", so a client's check lets the empty value through
/// and the service names it.
const REQUIRED_THOUGH_IGNORED_WHEN_EMPTY: &[(&str, &str, &str)] = &[
    (
        "CreateUser",
        "user.email",
        "User is UpdateUser's too, which reads no address",
    ),
    (
        "CreateTicket",
        "ticket.requester_email",
        "Ticket is UpdateTicket's too; customers leave it empty, agents must not",
    ),
];

fn pool() -> DescriptorPool {
    DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes")
}

/// Every `buf.validate.field` rule reachable from `message`, outermost first.
fn declared_rules(message: &MessageDescriptor, prefix: &str, depth: usize) -> Vec<DeclaredRule> {
    let pool = message.parent_pool();
    let extension = pool
        .get_extension_by_name("buf.validate.field")
        .expect("the protos import buf/validate/validate.proto");
    let mut found = Vec::new();
    for field in message.fields() {
        let path = format!("{prefix}{}", field.name());
        let options = field.options();
        if options.has_extension(&extension)
            && let Value::Message(rules) = options.get_extension(&extension).into_owned()
        {
            found.push(DeclaredRule {
                path: path.clone(),
                field: field.clone(),
                rules,
            });
        }
        if let Kind::Message(inner) = field.kind()
            && !field.is_list()
            && depth < 3
            && inner.package_name() == "supportdesk.v1"
        {
            found.extend(declared_rules(&inner, &format!("{path}."), depth + 1));
        }
    }
    found
}

fn rule(rules: &DynamicMessage, name: &str) -> Option<Value> {
    let field = rules.descriptor().get_field_by_name(name)?;
    rules
        .has_field(&field)
        .then(|| rules.get_field(&field).into_owned())
}

fn sub_rules(rules: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    if let Value::Message(inner) = rule(rules, name)? {
        Some(inner)
    } else {
        None
    }
}

fn number(rules: &DynamicMessage, name: &str) -> Option<i64> {
    let value = rule(rules, name)?;
    value
        .as_i64()
        .or_else(|| value.as_i32().map(i64::from))
        .or_else(|| value.as_u32().map(i64::from))
        .or_else(|| value.as_u64().and_then(|value| i64::try_from(value).ok()))
}

fn numbers(rules: &DynamicMessage, name: &str) -> Vec<i32> {
    match rule(rules, name) {
        Some(Value::List(values)) => values.iter().filter_map(Value::as_i32).collect(),
        _ => Vec::new(),
    }
}

/// A deliverable address of exactly `length` characters.
fn address_of_length(length: usize) -> String {
    let local = "l".repeat(64.min(length - 6));
    let mut domain = String::new();
    let mut left = length - local.len() - 1;
    while left > 0 {
        if !domain.is_empty() {
            domain.push('.');
            left -= 1;
        }
        let label = left.min(63);
        domain.push_str(&"d".repeat(label));
        left -= label;
    }
    format!("{local}@{domain}")
}

/// Text of `length` characters the field's other rules accept.
fn text_of_length(field: &FieldDescriptor, length: usize) -> String {
    if field.name().contains("email") {
        address_of_length(length)
    } else if field.name() == "url" {
        // An endpoint URL of that length, on a public name.
        let start = "https://hooks.example.com/";
        format!("{start}{}", "a".repeat(length.saturating_sub(start.len())))
    } else if field.full_name() == "supportdesk.v1.SlaPolicy.filter" {
        // A policy's condition names what a ticket has, never a time.
        let filter = "priority = urgent";
        format!(
            "{filter}{}",
            " ".repeat(length.saturating_sub(filter.len()))
        )
    } else if field.name() == "filter" {
        // A filter every ticket read accepts (the change feed's included), padded with spaces.
        let filter = "create_time < now()";
        format!(
            "{filter}{}",
            " ".repeat(length.saturating_sub(filter.len()))
        )
    } else {
        "a".repeat(length)
    }
}

/// The values the declaration of `rule` accepts at its limits and refuses just past them.
/// `existing`: for an id the service also looks up (a stateful rule no declaration states), one
/// it finds, so that the accepted cases are accepted by the lookup too.
fn cases(rule: &DeclaredRule, existing: Option<uuid::Uuid>) -> Vec<Case> {
    let case = |what: String, value: Option<Value>, accepted: bool| Case {
        what,
        value,
        accepted,
        within: None,
    };
    let mut cases = Vec::new();
    let rules = &rule.rules;
    if matches!(self::rule(rules, "required"), Some(Value::Bool(true))) {
        if rule.field.kind() == Kind::String {
            cases.push(case(
                "empty".into(),
                Some(Value::String(String::new())),
                false,
            ));
        } else {
            cases.push(case("absent".into(), None, false));
        }
    }
    let ignores_empty =
        self::rule(rules, "ignore").and_then(|value| value.as_enum_number()) == Some(1);
    if ignores_empty {
        cases.push(case(
            "empty".into(),
            Some(Value::String(String::new())),
            true,
        ));
    }
    if let Some(string) = sub_rules(rules, "string") {
        let text = |length: i64| {
            Some(Value::String(text_of_length(
                &rule.field,
                usize::try_from(length).unwrap(),
            )))
        };
        if let Some(maximum) = number(&string, "max_len") {
            cases.push(case(format!("{maximum} characters"), text(maximum), true));
            cases.push(case(
                format!("{} characters", maximum + 1),
                text(maximum + 1),
                false,
            ));
        }
        if let Some(minimum) = number(&string, "min_len") {
            cases.push(case(format!("{minimum} characters"), text(minimum), true));
            cases.push(case(
                format!("{} characters", minimum - 1),
                text(minimum - 1),
                false,
            ));
        }
        if let Some(Value::String(pattern)) = self::rule(&string, "pattern") {
            let (_, accepted, refused) = PATTERN_SAMPLES
                .iter()
                .find(|(declared, _, _)| *declared == pattern)
                .unwrap_or_else(|| panic!("{}: no samples for the pattern {pattern}", rule.path));
            cases.push(case(
                format!("{accepted:?}"),
                Some(Value::String((*accepted).into())),
                true,
            ));
            cases.push(case(
                format!("{refused:?}"),
                Some(Value::String((*refused).into())),
                false,
            ));
        }
    }
    if let Some(string) = sub_rules(rules, "string")
        && matches!(self::rule(&string, "uuid"), Some(Value::Bool(true)))
    {
        let id = existing.unwrap_or_else(uuid::Uuid::now_v7);
        let text = |value: String| Some(Value::String(value));
        let hyphenated = id.hyphenated().to_string();
        cases.push(case("a UUID".into(), text(hyphenated.clone()), true));
        cases.push(case(
            "a UUID in capitals".into(),
            text(hyphenated.to_uppercase()),
            true,
        ));
        for (what, refused) in [
            ("the simple form", id.simple().to_string()),
            ("the braced form", id.braced().to_string()),
            ("the URN form", id.urn().to_string()),
            ("a padded UUID", format!(" {hyphenated}")),
            ("no UUID", "ticket-1".to_owned()),
        ] {
            cases.push(case(what.into(), text(refused), false));
        }
    }
    if let Some(Value::List(custom)) = self::rule(rules, "cel") {
        for cel in custom {
            let Value::Message(cel) = cel else {
                panic!("{}: a CEL rule that is no message", rule.path);
            };
            let Some(Value::String(id)) = self::rule(&cel, "id") else {
                panic!("{}: a CEL rule without an id", rule.path);
            };
            let (_, accepted, refused) = CEL_SAMPLES
                .iter()
                .find(|(declared, _, _)| *declared == id)
                .unwrap_or_else(|| panic!("{}: no samples for the CEL rule {id}", rule.path));
            let samples = accepted
                .iter()
                .map(|sample| (sample, true))
                .chain(refused.iter().map(|sample| (sample, false)));
            for (sample, accepted) in samples {
                let (within, value) = cel_sample(&rule.field, sample, existing);
                cases.push(Case {
                    within,
                    ..case(format!("{id}: {sample:?}"), Some(value), accepted)
                });
            }
        }
    }
    for kind in ["int32", "int64"] {
        let Some(bounds) = sub_rules(rules, kind) else {
            continue;
        };
        let value = |n: i64| {
            Some(if kind == "int32" {
                Value::I32(i32::try_from(n).unwrap())
            } else {
                Value::I64(n)
            })
        };
        if let Some(minimum) = number(&bounds, "gte") {
            cases.push(case(minimum.to_string(), value(minimum), true));
            cases.push(case((minimum - 1).to_string(), value(minimum - 1), false));
        }
        if let Some(beyond) = number(&bounds, "gt") {
            cases.push(case((beyond + 1).to_string(), value(beyond + 1), true));
            cases.push(case(beyond.to_string(), value(beyond), false));
        }
        if let Some(maximum) = number(&bounds, "lte") {
            cases.push(case(maximum.to_string(), value(maximum), true));
            cases.push(case((maximum + 1).to_string(), value(maximum + 1), false));
        }
    }
    let enum_cases = |enum_rules: &DynamicMessage, wrap: &dyn Fn(i32) -> Value| {
        let Kind::Enum(descriptor) = rule.field.kind() else {
            panic!("{}: enum rules on a field that is no enum", rule.path);
        };
        let allowed = numbers(enum_rules, "in");
        let refused = numbers(enum_rules, "not_in");
        let mut cases = Vec::new();
        for value in descriptor.values() {
            let number = value.number();
            let accepted =
                (allowed.is_empty() || allowed.contains(&number)) && !refused.contains(&number);
            cases.push(case(value.name().to_owned(), Some(wrap(number)), accepted));
        }
        if matches!(
            self::rule(enum_rules, "defined_only"),
            Some(Value::Bool(true))
        ) {
            cases.push(case(
                "the undefined number 999".into(),
                Some(wrap(999)),
                false,
            ));
        }
        cases
    };
    if let Some(enum_rules) = sub_rules(rules, "enum") {
        cases.extend(enum_cases(&enum_rules, &Value::EnumNumber));
    }
    if let Some(items) =
        sub_rules(rules, "repeated").and_then(|repeated| sub_rules(&repeated, "items"))
        && let Some(enum_rules) = sub_rules(&items, "enum")
    {
        let one = |number: i32| Value::List(vec![Value::EnumNumber(number)]);
        cases.extend(enum_cases(&enum_rules, &one));
    }
    let string_items = sub_rules(rules, "repeated")
        .and_then(|repeated| sub_rules(&repeated, "items"))
        .and_then(|items| sub_rules(&items, "string"));
    let one_string = |text: String| Some(Value::List(vec![Value::String(text)]));
    if let Some(string_rules) = &string_items
        && self::rule(string_rules, "in").is_none()
    {
        // Items free-form within limits: one item at each limit, and one just past it.
        if let Some(maximum) = number(string_rules, "max_len") {
            let at = usize::try_from(maximum).expect("a length");
            cases.push(case(
                format!("[{maximum} characters]"),
                one_string("a".repeat(at)),
                true,
            ));
            cases.push(case(
                format!("[{} characters]", maximum + 1),
                one_string("a".repeat(at + 1)),
                false,
            ));
        }
        if let Some(minimum) = number(string_rules, "min_len")
            && minimum > 0
        {
            let at = usize::try_from(minimum).expect("a length");
            cases.push(case(
                format!("[{minimum} characters]"),
                one_string("a".repeat(at)),
                true,
            ));
            cases.push(case(
                format!("[{} characters]", minimum - 1),
                one_string("a".repeat(at - 1)),
                false,
            ));
        }
        if let Some(Value::String(pattern)) = self::rule(string_rules, "pattern") {
            let (_, accepted, refused) = PATTERN_SAMPLES
                .iter()
                .find(|(declared, _, _)| *declared == pattern)
                .unwrap_or_else(|| panic!("{}: no samples for the pattern {pattern}", rule.path));
            cases.push(case(
                format!("[{accepted:?}]"),
                one_string((*accepted).into()),
                true,
            ));
            cases.push(case(
                format!("[{refused:?}]"),
                one_string((*refused).into()),
                false,
            ));
        }
    } else if let Some(string_rules) = &string_items {
        // Each name the list's items may be, alone, and one they may not.
        let Some(Value::List(allowed)) = self::rule(string_rules, "in") else {
            panic!("{}: string items without `in`", rule.path);
        };
        for name in allowed {
            let Value::String(name) = name else {
                panic!("{}: an `in` that is no string", rule.path);
            };
            cases.push(case(
                format!("[{name:?}]"),
                Some(Value::List(vec![Value::String(name.clone())])),
                true,
            ));
        }
        cases.push(case(
            "[\"not.in.the.list\"]".into(),
            Some(Value::List(vec![Value::String("not.in.the.list".into())])),
            false,
        ));
    }
    if let Some(repeated) = sub_rules(rules, "repeated")
        && let Some(maximum) = number(&repeated, "max_items")
    {
        // As many items as the maximum, each the first the items' rules allow, and one more.
        let enum_item = || {
            let enum_rules =
                sub_rules(&repeated, "items").and_then(|items| sub_rules(&items, "enum"))?;
            let allowed = numbers(&enum_rules, "in");
            let refused = numbers(&enum_rules, "not_in");
            let Kind::Enum(descriptor) = rule.field.kind() else {
                return None;
            };
            descriptor
                .values()
                .map(|value| value.number())
                .find(|number| {
                    (allowed.is_empty() || allowed.contains(number)) && !refused.contains(number)
                })
                .map(Value::EnumNumber)
        };
        let item = string_items
            .as_ref()
            .and_then(|string_rules| match self::rule(string_rules, "in") {
                Some(Value::List(allowed)) => allowed.first().cloned(),
                // UUID items (CountViews' ids): one well-formed UUID.
                _ if matches!(self::rule(string_rules, "uuid"), Some(Value::Bool(true))) => Some(
                    Value::String("0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c".to_owned()),
                ),
                // Free-form items: the pattern's accepted sample, else one letter.
                _ => Some(Value::String(
                    match self::rule(string_rules, "pattern") {
                        Some(Value::String(pattern)) => PATTERN_SAMPLES
                            .iter()
                            .find(|(declared, _, _)| *declared == pattern)
                            .map_or("a", |(_, accepted, _)| *accepted),
                        _ => "a",
                    }
                    .to_owned(),
                )),
            })
            .or_else(enum_item)
            .or_else(|| {
                // A list of free-form strings without item rules: one letter each.
                matches!(rule.field.kind(), Kind::String).then(|| Value::String("a".into()))
            })
            .unwrap_or_else(|| panic!("{}: no item to make a list of", rule.path));
        let list = |count: i64| Some(Value::List((0..count).map(|_| item.clone()).collect()));
        cases.push(case(format!("{maximum} items"), list(maximum), true));
        cases.push(case(
            format!("{} items", maximum + 1),
            list(maximum + 1),
            false,
        ));
    }
    if let Some(repeated) = sub_rules(rules, "repeated")
        && let Some(minimum) = number(&repeated, "min_items")
    {
        // As many items as the minimum, each one the items' rules allow, and one fewer.
        let item = sub_rules(&repeated, "items")
            .and_then(|items| sub_rules(&items, "enum"))
            .and_then(|enum_rules| numbers(&enum_rules, "in").first().copied())
            .map(Value::EnumNumber)
            .or_else(|| {
                // A list of free-form strings: one letter each.
                matches!(rule.field.kind(), Kind::String).then(|| Value::String("a".into()))
            })
            .unwrap_or_else(|| panic!("{}: no item to make a list of", rule.path));
        let list = |count: i64| Some(Value::List((0..count).map(|_| item.clone()).collect()));
        cases.push(case(format!("{minimum} items"), list(minimum), true));
        if minimum > 0 {
            cases.push(case(
                format!("{} items", minimum - 1),
                list(minimum - 1),
                false,
            ));
        }
    }
    if let Some(timestamp) = sub_rules(rules, "timestamp") {
        let Kind::Message(descriptor) = rule.field.kind() else {
            panic!(
                "{}: timestamp rules on a field that is no Timestamp",
                rule.path
            );
        };
        let at = |(seconds, nanos): (i64, i64)| {
            let mut value = DynamicMessage::new(descriptor.clone());
            value.set_field_by_name("seconds", Value::I64(seconds));
            value.set_field_by_name("nanos", Value::I32(i32::try_from(nanos).unwrap()));
            Some(Value::Message(value))
        };
        let bound = |name: &str| {
            sub_rules(&timestamp, name).map(|bound| {
                (
                    number(&bound, "seconds").unwrap_or(0),
                    number(&bound, "nanos").unwrap_or(0),
                )
            })
        };
        const LAST_NANO: i64 = 999_999_999;
        let earlier = |(seconds, nanos): (i64, i64)| {
            if nanos > 0 {
                (seconds, nanos - 1)
            } else {
                (seconds - 1, LAST_NANO)
            }
        };
        let later = |(seconds, nanos): (i64, i64)| {
            if nanos < LAST_NANO {
                (seconds, nanos + 1)
            } else {
                (seconds + 1, 0)
            }
        };
        let mut push = |time: (i64, i64), accepted: bool| {
            cases.push(case(
                format!("{}.{:09} s", time.0, time.1),
                at(time),
                accepted,
            ));
        };
        if let Some(lowest) = bound("gte") {
            push(lowest, true);
            push(earlier(lowest), false);
        }
        if let Some(highest) = bound("lte") {
            push(highest, true);
            push(later(highest), false);
        }
        if let Some(beyond) = bound("lt") {
            push(earlier(beyond), true);
            push(beyond, false);
        }
    }
    assert!(
        !cases.is_empty(),
        "{}: rules the test cannot try yet: {:?}",
        rule.path,
        rules
    );
    cases
}

/// Sets (or, for `None`, clears) the field at `path` of `message`.
fn set_at(message: &mut DynamicMessage, path: &str, value: Option<Value>) {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let field = message
        .descriptor()
        .get_field_by_name(head)
        .unwrap_or_else(|| panic!("no field {head}"));
    match (rest, value) {
        (Some(rest), value) => {
            let Value::Message(inner) = message.get_field_mut(&field) else {
                panic!("{head} is no message");
            };
            set_at(inner, rest, value);
        }
        (None, Some(value)) => message.set_field(&field, value),
        (None, None) => message.clear_field(&field),
    }
}

/// One case as a client validating requests before sending them would see it.
struct ClientCase {
    label: String,
    /// The request message's full proto name.
    message: String,
    path: String,
    accepted: bool,
    request: Vec<u8>,
}

/// The field paths a client validating with protovalidate refuses in each case's request, in
/// order: `client` reads the service's own descriptor set (its last argument) and the cases as JSON
/// lines on its standard input, and prints one `{"violations": [...]}` line per case.
fn client_verdicts(mut client: std::process::Command, cases: &[ClientCase]) -> Vec<Vec<String>> {
    use base64::Engine;
    use std::io::Write;
    let descriptors = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(descriptors.path(), proto::FILE_DESCRIPTOR_SET).expect("write the descriptors");
    let mut child = client
        .arg(descriptors.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the client's validator");
    let mut input = child.stdin.take().expect("its standard input");
    for case in cases {
        let line = serde_json::json!({
            "message": case.message,
            "request": base64::engine::general_purpose::STANDARD.encode(&case.request),
        });
        writeln!(input, "{line}").expect("write a case");
    }
    drop(input);
    let output = child
        .wait_with_output()
        .expect("the client's validator ends");
    assert!(output.status.success(), "the client's validator failed");
    let verdicts: Vec<Vec<String>> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let verdict: serde_json::Value = serde_json::from_str(line).expect("a JSON verdict");
            verdict["violations"]
                .as_array()
                .expect("violations")
                .iter()
                .map(|field| field.as_str().expect("a path").to_owned())
                .collect()
        })
        .collect();
    assert_eq!(verdicts.len(), cases.len(), "one verdict per case");
    verdicts
}

/// Each client's verdicts on `cases`: Python with PyPI protovalidate, and the generated
/// TypeScript client (`clients/typescript/validate.ts`, @bufbuild/protovalidate).
fn verdicts_of_each_client(cases: &[ClientCase]) -> Vec<(&'static str, Vec<Vec<String>>)> {
    let mut python = std::process::Command::new(tool("PROTOVALIDATE_PYTHON_BIN"));
    python.arg(repository_root().join("tests/api/support/protovalidate_verdicts.py"));
    let typescript = TypescriptClient::generate();
    vec![
        ("Python's protovalidate", client_verdicts(python, cases)),
        (
            "the TypeScript client",
            client_verdicts(typescript.program("check"), cases),
        ),
    ]
}

/// What the test needs to exist for requests to be otherwise valid.
struct Fixtures {
    endpoint: v1::WebhookEndpoint,
    group: v1::Group,
    schedule: v1::Schedule,
    sla_policy: v1::SlaPolicy,
    view: v1::View,
    custom_field: v1::CustomField,
    ticket: v1::Ticket,
    comment: v1::Comment,
    agent: TestUser,
    customer: TestUser,
}

impl Fixtures {
    /// The id a field must name for the service's lookup to pass, where it looks one up.
    fn existing(&self, method: &str, path: &str) -> Option<uuid::Uuid> {
        let id = match (method, path) {
            ("CreateUpload", "comment_id") => self.comment.id.clone(),
            ("CreateTicket", "ticket.assignee_id") => self.agent.id.to_string(),
            ("CreateTicket", "ticket.group_id") | ("AssignTicket", "group_id") => {
                self.group.id.clone()
            }
            ("UpdateTicket", "ticket") => self.ticket.id.clone(),
            ("UpdateUser", "user") => self.agent.id.to_string(),
            ("UpdateWebhookEndpoint", "webhook_endpoint") => self.endpoint.id.clone(),
            ("UpdateGroup", "group") => self.group.id.clone(),
            ("UpdateSchedule", "schedule") => self.schedule.id.clone(),
            ("UpdateSlaPolicy", "sla_policy") => self.sla_policy.id.clone(),
            ("CreateSlaPolicy" | "UpdateSlaPolicy", "sla_policy.schedule_id") => {
                self.schedule.id.clone()
            }
            ("UpdateView", "view") => self.view.id.clone(),
            ("CreateView", "view.group_id") => self.group.id.clone(),
            ("UpdateCustomField", "custom_field") => self.custom_field.id.clone(),
            _ => return None,
        };
        Some(uuid::Uuid::parse_str(&id).expect("a UUID"))
    }
}

/// The valid request a rule of `path` is tried on: where the parts of a declaration agree only
/// in some combinations (a custom field's options go with the choice kinds, its pattern with
/// the pattern kind), the one in which the part tried is read; otherwise [`valid_request`].
fn valid_request_for(method: &str, path: &str, fixtures: &Fixtures) -> Option<Vec<u8>> {
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let field = |kind: v1::CustomFieldKind, pattern: &str| {
        v1::CreateCustomFieldRequest {
            custom_field: Some(v1::CustomField {
                key: format!("f{unique}"),
                title: "Declared rules".into(),
                kind: kind.into(),
                pattern: pattern.into(),
                ..Default::default()
            }),
        }
        .encode_to_vec()
    };
    match (method, path) {
        ("CreateCustomField", "custom_field.kind") => Some(field(v1::CustomFieldKind::Text, "")),
        ("CreateCustomField", "custom_field.pattern") => {
            Some(field(v1::CustomFieldKind::Pattern, "[0-9]+"))
        }
        _ => valid_request(method, fixtures),
    }
}

/// A valid request of each RPC that has declared rules, as bytes (fresh ones each time: some
/// create something unique).
fn valid_request(method: &str, fixtures: &Fixtures) -> Option<Vec<u8>> {
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let nothing = || uuid::Uuid::now_v7().to_string();
    let mask = |paths: &[&str]| {
        Some(prost_types::FieldMask {
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
        })
    };
    Some(match method {
        "Login" => v1::LoginRequest {
            account: "no-such-account".into(),
            email: "nobody@example.com".into(),
            password: "not the password".into(),
        }
        .encode_to_vec(),
        "RequestPasswordReset" => v1::RequestPasswordResetRequest {
            account: "no-such-account".into(),
            email: "nobody@example.com".into(),
        }
        .encode_to_vec(),
        "RefreshToken" => v1::RefreshTokenRequest {
            refresh_token: "not-a-token".into(),
        }
        .encode_to_vec(),
        "ResetPassword" => v1::ResetPasswordRequest {
            account: "no-such-account".into(),
            token: "not-a-token".into(),
            new_password: "a new password of some length".into(),
        }
        .encode_to_vec(),
        "CreateAccount" => v1::CreateAccountRequest {
            name: "Declared rules".into(),
            slug: format!("rules-{}", &unique[..20]),
            admin_email: format!("admin-{unique}@example.com"),
            admin_password: "a password of some length".into(),
            admin_display_name: String::new(),
        }
        .encode_to_vec(),
        "CreateUser" => v1::CreateUserRequest {
            user: Some(v1::User {
                email: format!("agent-{unique}@example.com"),
                role: v1::UserRole::Agent.into(),
                ..Default::default()
            }),
            password: "a password of some length".into(),
        }
        .encode_to_vec(),
        "UpdateUser" => v1::UpdateUserRequest {
            user: Some(v1::User {
                id: fixtures.agent.id.to_string(),
                display_name: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: mask(&["display_name"]),
        }
        .encode_to_vec(),
        "CreateApiKey" => v1::CreateApiKeyRequest {
            api_key: Some(v1::ApiKey {
                name: "declared rules".into(),
                roles: vec![v1::UserRole::Agent.into()],
                ..Default::default()
            }),
        }
        .encode_to_vec(),
        "CreateTicket" => valid_create_request("declared rules").encode_to_vec(),
        "CreateWebhookEndpoint" => v1::CreateWebhookEndpointRequest {
            webhook_endpoint: Some(v1::WebhookEndpoint {
                url: "https://hooks.example.com/declared".into(),
                description: "declared rules".into(),
                event_types: vec!["ticket.created".into()],
                ..Default::default()
            }),
        }
        .encode_to_vec(),
        "CreateGroup" => v1::CreateGroupRequest {
            group: Some(v1::Group {
                name: format!("declared rules {unique}"),
                description: "declared rules".into(),
                ..Default::default()
            }),
        }
        .encode_to_vec(),
        "CreateCustomField" => v1::CreateCustomFieldRequest {
            custom_field: Some(v1::CustomField {
                key: format!("f{unique}"),
                title: "Declared rules".into(),
                kind: v1::CustomFieldKind::SingleChoice.into(),
                choices: vec!["one".into(), "two".into()],
                ..Default::default()
            }),
        }
        .encode_to_vec(),
        "CreateView" => v1::CreateViewRequest {
            view: Some(v1::View {
                name: format!("declared rules {unique}"),
                filter: "status = open".into(),
                scope: v1::ViewScope::Group.into(),
                group_id: fixtures.group.id.clone(),
                ..Default::default()
            }),
        }
        .encode_to_vec(),
        "GetView" => v1::GetViewRequest { id: nothing() }.encode_to_vec(),
        "ListViews" => v1::ListViewsRequest::default().encode_to_vec(),
        "UpdateView" => v1::UpdateViewRequest {
            view: Some(v1::View {
                id: fixtures.view.id.clone(),
                name: format!("declared rules {unique}"),
                filter: "status = open".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name", "filter", "order_by"]),
        }
        .encode_to_vec(),
        "DeleteView" => v1::DeleteViewRequest { id: nothing() }.encode_to_vec(),
        "CountViews" => v1::CountViewsRequest::default().encode_to_vec(),
        "CreateSchedule" => v1::CreateScheduleRequest {
            schedule: Some(crate::cross_cutting::tenancy::office_hours(&format!(
                "declared rules {unique}"
            ))),
        }
        .encode_to_vec(),
        "GetSchedule" => v1::GetScheduleRequest { id: nothing() }.encode_to_vec(),
        "ListSchedules" => v1::ListSchedulesRequest::default().encode_to_vec(),
        "UpdateSchedule" => v1::UpdateScheduleRequest {
            schedule: Some(v1::Schedule {
                id: fixtures.schedule.id.clone(),
                ..crate::cross_cutting::tenancy::office_hours(&format!("declared rules {unique}"))
            }),
            update_mask: mask(&["name", "time_zone"]),
        }
        .encode_to_vec(),
        "DeleteSchedule" => v1::DeleteScheduleRequest { id: nothing() }.encode_to_vec(),
        "ComputeDueTime" => v1::ComputeDueTimeRequest {
            clock: Some(v1::compute_due_time_request::Clock::Schedule(
                crate::cross_cutting::tenancy::office_hours(""),
            )),
            start_time: Some(prost_types::Timestamp {
                seconds: 1_790_000_000,
                nanos: 0,
            }),
            minutes: 60,
        }
        .encode_to_vec(),
        "CreateSlaPolicy" => v1::CreateSlaPolicyRequest {
            // Calendar time, so that the schedule tried may be any or none.
            sla_policy: Some(crate::cross_cutting::tenancy::urgent_policy(
                &format!("declared rules {unique}"),
                "",
            )),
        }
        .encode_to_vec(),
        "GetSlaPolicy" => v1::GetSlaPolicyRequest { id: nothing() }.encode_to_vec(),
        "ListSlaPolicies" => v1::ListSlaPoliciesRequest::default().encode_to_vec(),
        "UpdateSlaPolicy" => v1::UpdateSlaPolicyRequest {
            sla_policy: Some(v1::SlaPolicy {
                id: fixtures.sla_policy.id.clone(),
                description: "still declared".into(),
                ..crate::cross_cutting::tenancy::urgent_policy(
                    &format!("declared rules {unique}"),
                    "",
                )
            }),
            update_mask: mask(&[
                "name",
                "description",
                "position",
                "filter",
                "schedule_id",
                "warning_minutes",
            ]),
        }
        .encode_to_vec(),
        "DeleteSlaPolicy" => v1::DeleteSlaPolicyRequest { id: nothing() }.encode_to_vec(),
        "GetGroup" => v1::GetGroupRequest { id: nothing() }.encode_to_vec(),
        "ListGroups" => v1::ListGroupsRequest::default().encode_to_vec(),
        "UpdateGroup" => v1::UpdateGroupRequest {
            group: Some(v1::Group {
                id: fixtures.group.id.clone(),
                name: format!("declared rules {unique}"),
                description: "still declared".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name", "description"]),
        }
        .encode_to_vec(),
        "DeleteGroup" => v1::DeleteGroupRequest { id: nothing() }.encode_to_vec(),
        "AddGroupMember" => v1::AddGroupMemberRequest {
            group_id: nothing(),
            user_id: nothing(),
        }
        .encode_to_vec(),
        "RemoveGroupMember" => v1::RemoveGroupMemberRequest {
            group_id: nothing(),
            user_id: nothing(),
        }
        .encode_to_vec(),
        "ListGroupMembers" => v1::ListGroupMembersRequest {
            group_id: nothing(),
            ..Default::default()
        }
        .encode_to_vec(),
        "GetCustomField" => v1::GetCustomFieldRequest { id: nothing() }.encode_to_vec(),
        "RetireCustomField" => v1::RetireCustomFieldRequest { id: nothing() }.encode_to_vec(),
        "UpdateCustomField" => v1::UpdateCustomFieldRequest {
            custom_field: Some(v1::CustomField {
                id: fixtures.custom_field.id.clone(),
                // The fixture's own key and kind: never changed, sent so that a client's
                // check of the whole message passes.
                key: "fixture".into(),
                kind: v1::CustomFieldKind::Text.into(),
                title: "Renamed".into(),
                description: "Still declared".into(),
                position: 1,
                ..Default::default()
            }),
            update_mask: mask(&["title", "description", "position"]),
        }
        .encode_to_vec(),
        "GetWebhookEndpoint" => v1::GetWebhookEndpointRequest { id: nothing() }.encode_to_vec(),
        "ListWebhookEndpoints" => v1::ListWebhookEndpointsRequest::default().encode_to_vec(),
        "UpdateWebhookEndpoint" => v1::UpdateWebhookEndpointRequest {
            webhook_endpoint: Some(v1::WebhookEndpoint {
                id: fixtures.endpoint.id.clone(),
                url: "https://hooks.example.com/declared".into(),
                description: "still declared".into(),
                ..Default::default()
            }),
            update_mask: mask(&["url", "description", "event_types"]),
        }
        .encode_to_vec(),
        "DeleteWebhookEndpoint" => {
            v1::DeleteWebhookEndpointRequest { id: nothing() }.encode_to_vec()
        }
        "RotateWebhookEndpointSecret" => {
            v1::RotateWebhookEndpointSecretRequest { id: nothing() }.encode_to_vec()
        }
        "SendTestWebhookEvent" => v1::SendTestWebhookEventRequest { id: nothing() }.encode_to_vec(),
        "ListWebhookDeliveries" => v1::ListWebhookDeliveriesRequest {
            endpoint_id: fixtures.endpoint.id.clone(),
            ..Default::default()
        }
        .encode_to_vec(),
        "RedriveWebhookDelivery" => v1::RedriveWebhookDeliveryRequest {
            endpoint_id: fixtures.endpoint.id.clone(),
            id: nothing(),
        }
        .encode_to_vec(),
        "RedriveFailedWebhookDeliveries" => v1::RedriveFailedWebhookDeliveriesRequest {
            endpoint_id: fixtures.endpoint.id.clone(),
            since: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
        }
        .encode_to_vec(),
        "WatchEvents" => v1::WatchEventsRequest {
            end_when_caught_up: true,
            ..Default::default()
        }
        .encode_to_vec(),
        "UpdateTicket" => v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: fixtures.ticket.id.clone(),
                subject: "Still declared".into(),
                description: "Still valid.".into(),
                priority: v1::TicketPriority::High.into(),
                ..Default::default()
            }),
            update_mask: mask(&["subject", "description", "priority", "tags"]),
        }
        .encode_to_vec(),
        "AddComment" => v1::AddCommentRequest {
            ticket_id: fixtures.ticket.id.clone(),
            comment: Some(v1::Comment {
                body: "A comment.".into(),
                ..Default::default()
            }),
        }
        .encode_to_vec(),
        "SearchTickets" => v1::SearchTicketsRequest {
            q: "printer".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "ImportTickets" => v1::ImportTicketsRequest {
            format: v1::ImportFormat::Csv.into(),
            content: "subject,description,requester_email\nImported,From a file,a@example.com\n"
                .into(),
        }
        .encode_to_vec(),
        "ListComments" => v1::ListCommentsRequest {
            ticket_id: fixtures.ticket.id.clone(),
            ..Default::default()
        }
        .encode_to_vec(),
        "ListTicketActivity" => v1::ListTicketActivityRequest {
            ticket_id: fixtures.ticket.id.clone(),
            ..Default::default()
        }
        .encode_to_vec(),
        "ListAttachments" => v1::ListAttachmentsRequest {
            ticket_id: fixtures.ticket.id.clone(),
            ..Default::default()
        }
        .encode_to_vec(),
        "CreateCharge" => v1::CreateChargeRequest {
            charge: Some(v1::Charge {
                customer_id: fixtures.customer.id.to_string(),
                amount: Some(v1::Money {
                    amount_minor: 1250,
                    currency_code: "USD".into(),
                }),
                payment_method: "pm_card_visa".into(),
                ..Default::default()
            }),
        }
        .encode_to_vec(),
        "UpdateNotificationSettings" => v1::UpdateNotificationSettingsRequest {
            notification_settings: Some(v1::NotificationSettings {
                comment_notifications: true,
            }),
            update_mask: mask(&["comment_notifications"]),
        }
        .encode_to_vec(),
        "ListNotifications" => v1::ListNotificationsRequest {
            state: v1::NotificationState::Received.into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "ListWebhookEvents" => v1::ListWebhookEventsRequest {
            state: v1::WebhookEventState::Processed.into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "CreateUpload" => upload_request(
            &fixtures.ticket.id,
            "notes.txt",
            "text/plain",
            b"declared rules",
        )
        .encode_to_vec(),
        "GetTicket" => v1::GetTicketRequest {
            id: fixtures.ticket.id.clone(),
            read_mask: None,
        }
        .encode_to_vec(),
        "GetUser" => v1::GetUserRequest {
            id: fixtures.agent.id.to_string(),
        }
        .encode_to_vec(),
        // Ids of nothing: the answer is NOT_FOUND once the fields pass, and nothing changes.
        "AssignTicket" => v1::AssignTicketRequest {
            id: nothing(),
            ..Default::default()
        }
        .encode_to_vec(),
        "AddTicketTags" => v1::AddTicketTagsRequest {
            id: nothing(),
            tags: vec!["vip".to_owned()],
            ..Default::default()
        }
        .encode_to_vec(),
        "RemoveTicketTags" => v1::RemoveTicketTagsRequest {
            id: nothing(),
            tags: vec!["vip".to_owned()],
            ..Default::default()
        }
        .encode_to_vec(),
        "RevokeApiKey" => v1::RevokeApiKeyRequest { id: nothing() }.encode_to_vec(),
        "MarkTicketPending" => v1::MarkTicketPendingRequest {
            id: nothing(),
            ..Default::default()
        }
        .encode_to_vec(),
        "HoldTicket" => v1::HoldTicketRequest {
            id: nothing(),
            ..Default::default()
        }
        .encode_to_vec(),
        "ResolveTicket" => v1::ResolveTicketRequest {
            id: nothing(),
            ..Default::default()
        }
        .encode_to_vec(),
        "ReopenTicket" => v1::ReopenTicketRequest {
            id: nothing(),
            ..Default::default()
        }
        .encode_to_vec(),
        "CloseTicket" => v1::CloseTicketRequest {
            id: nothing(),
            ..Default::default()
        }
        .encode_to_vec(),
        "DeleteTicket" => v1::DeleteTicketRequest {
            id: nothing(),
            ..Default::default()
        }
        .encode_to_vec(),
        "CompleteUpload" => v1::CompleteUploadRequest { id: nothing() }.encode_to_vec(),
        "GetAttachment" => v1::GetAttachmentRequest { id: nothing() }.encode_to_vec(),
        "DeleteAttachment" => v1::DeleteAttachmentRequest { id: nothing() }.encode_to_vec(),
        "GetDownloadUrl" => v1::GetDownloadUrlRequest { id: nothing() }.encode_to_vec(),
        "GetCharge" => v1::GetChargeRequest { id: nothing() }.encode_to_vec(),
        "RefundCharge" => v1::RefundChargeRequest {
            id: nothing(),
            ..Default::default()
        }
        .encode_to_vec(),
        "GetNotification" => v1::GetNotificationRequest { id: nothing() }.encode_to_vec(),
        "RedriveNotification" => v1::RedriveNotificationRequest { id: nothing() }.encode_to_vec(),
        "GetWebhookEvent" => v1::GetWebhookEventRequest { id: "evt_1".into() }.encode_to_vec(),
        "RedriveWebhookEvent" => {
            v1::RedriveWebhookEventRequest { id: "evt_1".into() }.encode_to_vec()
        }
        // Requests whose every field may be left unset.
        "ListUsers"
        | "ListApiKeys"
        | "ListTickets"
        | "ExportTickets"
        | "ListTicketChanges"
        | "ListTags"
        | "ListCharges"
        | "ListReconciliationFindings"
        | "GetRevenue"
        | "GetRecentActivity"
        | "ListSuppressions" => Vec::new(),
        _ => return None,
    })
}

/// Sends `message` to `path` as the admin; the status it was answered with (OK included). A
/// server stream is judged by its first answer.
async fn answer(app: &TestApp, path: &str, streaming: bool, message: Vec<u8>) -> tonic::Status {
    let mut grpc = raw_client(app.address).await;
    let mut request = app.as_admin(message);
    request.metadata_mut().insert(
        "idempotency-key",
        uuid::Uuid::now_v7().to_string().parse().unwrap(),
    );
    let path: http::uri::PathAndQuery = path.parse().unwrap();
    let answered = if streaming {
        match grpc.server_streaming(request, path, RawBytes).await {
            Ok(response) => response.into_inner().message().await.map(|_| ()),
            Err(status) => Err(status),
        }
    } else {
        grpc.unary(request, path, RawBytes).await.map(|_| ())
    };
    answered.err().unwrap_or_else(|| tonic::Status::ok(""))
}

/// Whether `status` refuses the field at `path` (or an item of it).
/// Whether `status` refuses the field at `path`: names it, an item of it (`[i]`) or a part of it
/// (a field mask's `update_mask.paths[i]`).
fn names(status: &tonic::Status, path: &str) -> bool {
    status.code() == Code::InvalidArgument
        && details(status).bad_request().is_some_and(|bad_request| {
            bad_request.field_violations.iter().any(|violation| {
                violation.field == path
                    || violation.field.starts_with(&format!("{path}["))
                    || violation.field.starts_with(&format!("{path}."))
            })
        })
}

#[tokio::test]
async fn every_declared_rule_accepts_its_limit_and_refuses_just_past_it_as_the_service_does() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("declared rules").await;
    let comment = app
        .comment(&ticket.id, "Attachments go here.")
        .try_add()
        .await
        .expect("a comment");
    let endpoint = supportdesk::wire::proto::v1::webhook_endpoint_service_client::WebhookEndpointServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.address))
            .unwrap()
            .connect_lazy(),
    )
    .create_webhook_endpoint(crate::support::keyed(app.as_admin(
        v1::CreateWebhookEndpointRequest {
            webhook_endpoint: Some(v1::WebhookEndpoint {
                url: "https://hooks.example.com/fixture".into(),
                ..Default::default()
            }),
        },
    )))
    .await
    .expect("the fixture endpoint")
    .into_inner()
    .webhook_endpoint
    .expect("an endpoint");
    let group = crate::cross_cutting::tenancy::groups(&app)
        .create_group(app.as_admin(v1::CreateGroupRequest {
            group: Some(v1::Group {
                name: "declared rules fixture".into(),
                ..Default::default()
            }),
        }))
        .await
        .expect("the fixture group")
        .into_inner();
    let view = crate::cross_cutting::tenancy::views(&app)
        .create_view(app.as_admin(v1::CreateViewRequest {
            view: Some(v1::View {
                name: "declared rules fixture".into(),
                scope: v1::ViewScope::Account.into(),
                ..Default::default()
            }),
        }))
        .await
        .expect("the fixture view")
        .into_inner();
    let custom_field = crate::cross_cutting::tenancy::custom_fields(&app)
        .create_custom_field(app.as_admin(v1::CreateCustomFieldRequest {
            custom_field: Some(v1::CustomField {
                key: "fixture".into(),
                title: "Fixture".into(),
                kind: v1::CustomFieldKind::Text.into(),
                ..Default::default()
            }),
        }))
        .await
        .expect("the fixture custom field")
        .into_inner();
    let schedule = crate::cross_cutting::tenancy::schedules(&app)
        .create_schedule(app.as_admin(v1::CreateScheduleRequest {
            schedule: Some(crate::cross_cutting::tenancy::office_hours(
                "declared rules fixture",
            )),
        }))
        .await
        .expect("the fixture schedule")
        .into_inner();
    let sla_policy = crate::cross_cutting::tenancy::sla_policies(&app)
        .create_sla_policy(app.as_admin(v1::CreateSlaPolicyRequest {
            sla_policy: Some(crate::cross_cutting::tenancy::urgent_policy(
                "declared rules fixture",
                "",
            )),
        }))
        .await
        .expect("the fixture SLA policy")
        .into_inner();
    let fixtures = Fixtures {
        sla_policy,
        schedule,
        endpoint,
        custom_field,
        group,
        view,
        ticket,
        comment,
        agent: app.add_user(&app.admin, v1::UserRole::Agent).await,
        customer: app.add_user(&app.admin, v1::UserRole::Customer).await,
    };
    let pool = pool();
    let mut disagreements = Vec::new();
    let mut client_cases = Vec::new();
    let mut without_request = Vec::new();
    let mut tried: BTreeMap<String, usize> = BTreeMap::new();
    for service in pool
        .services()
        .filter(|service| service.package_name() == "supportdesk.v1")
    {
        for method in service.methods() {
            let rules = declared_rules(&method.input(), "", 0);
            if rules.is_empty() {
                continue;
            }
            let name = method.name();
            if valid_request(name, &fixtures).is_none() {
                without_request.push(name.to_owned());
                continue;
            }
            let path = format!("/{}/{}", service.full_name(), name);
            for rule in rules {
                // A rule this test derives no case for would be declared and never tried.
                for kind in rule_names(&rule.rules, "") {
                    assert!(
                        TRIED.contains(&kind.as_str())
                            || CEL_SAMPLES.iter().any(|(id, _, _)| *id == kind),
                        "{name} {}: the test derives no case for the rule {kind}",
                        rule.path
                    );
                }
                if NOT_READ
                    .iter()
                    .chain(TRIED_BY_BEHAVIOUR_TESTS)
                    .any(|(rpc, field, _)| *rpc == name && *field == rule.path)
                {
                    continue;
                }
                let required_anyway = REQUIRED_THOUGH_IGNORED_WHEN_EMPTY
                    .iter()
                    .any(|(rpc, field, _)| *rpc == name && *field == rule.path);
                for case in cases(&rule, fixtures.existing(name, &rule.path)) {
                    if required_anyway && case.accepted && case.what == "empty" {
                        continue;
                    }
                    let mut request = DynamicMessage::decode(
                        method.input(),
                        valid_request_for(name, &rule.path, &fixtures)
                            .expect("a valid request")
                            .as_slice(),
                    )
                    .expect("the valid request decodes");
                    let at = case.within.as_ref().map_or_else(
                        || rule.path.clone(),
                        |inner| format!("{}.{inner}", rule.path),
                    );
                    set_at(&mut request, &at, case.value);
                    let bytes = request.encode_to_vec();
                    let status =
                        answer(&app, &path, method.is_server_streaming(), bytes.clone()).await;
                    client_cases.push(ClientCase {
                        label: format!("{name} {} = {}", rule.path, case.what),
                        message: method.input().full_name().to_owned(),
                        path: rule.path.clone(),
                        accepted: case.accepted,
                        request: bytes,
                    });
                    let refused = names(&status, &rule.path);
                    *tried.entry(format!("{name} {}", rule.path)).or_default() += 1;
                    if refused == case.accepted {
                        disagreements.push(format!(
                            "{name} {} = {}: declared {}, answered {:?} {:?} {:?}",
                            rule.path,
                            case.what,
                            if case.accepted { "valid" } else { "invalid" },
                            status.code(),
                            status.message(),
                            details(&status).bad_request()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        without_request.is_empty(),
        "RPCs with declared rules and no valid request here: {without_request:?}"
    );
    assert!(
        disagreements.is_empty(),
        "the declared rule and the service disagree:\n{}",
        disagreements.join("\n")
    );
    // The same cases through the clients that check requests before sending them.
    for (client, verdicts) in verdicts_of_each_client(&client_cases) {
        let client_disagreements: Vec<String> = client_cases
            .iter()
            .zip(verdicts)
            .filter_map(|(case, violations)| {
                let refused = violations.iter().any(|field| {
                    *field == case.path || field.starts_with(&format!("{}[", case.path))
                });
                // Accepted: the client sends it (nothing else in the request is refused either).
                let agrees = if case.accepted {
                    violations.is_empty()
                } else {
                    refused
                };
                (!agrees).then(|| format!("{}: {client} says {violations:?}", case.label))
            })
            .collect();
        assert!(
            client_disagreements.is_empty(),
            "{client} and the declaration disagree:\n{}",
            client_disagreements.join("\n")
        );
    }
    // Every annotation was tried (not one of them skipped by a typo in NOT_READ).
    assert!(
        tried.len() >= 40,
        "only {} declared fields were tried: {tried:?}",
        tried.len()
    );
}

/// The names of the rules `rules` declares, as docs/errors.md's catalogue names them: a CEL rule
/// by its id, any other by its kind and the rule within it (`string.max_len`, `enum.in`,
/// `repeated.items.enum`).
fn rule_names(rules: &DynamicMessage, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (field, value) in rules.fields() {
        let name = format!("{prefix}{}", field.name());
        match (field.name(), value) {
            ("ignore", _) => {}
            ("cel", Value::List(custom)) => {
                for cel in custom {
                    if let Value::Message(cel) = cel
                        && let Some(Value::String(id)) = rule(cel, "id")
                    {
                        names.push(id);
                    }
                }
            }
            ("items", Value::Message(items)) => {
                for (kind, _) in items.fields() {
                    names.push(format!("{name}.{}", kind.name()));
                }
            }
            (_, Value::Message(within)) if prefix.is_empty() => {
                names.extend(rule_names(within, &format!("{name}.")));
            }
            _ => names.push(name),
        }
    }
    names
}

/// The rules docs/errors.md's catalogue ("Which declared rule refuses what") names, in the first
/// column of its table.
fn catalogued_rules() -> std::collections::BTreeSet<String> {
    let catalogue =
        std::fs::read_to_string(repository_root().join("docs/errors.md")).expect("docs/errors.md");
    let table = catalogue
        .split("<!-- rules:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- rules:end -->").next())
        .expect("docs/errors.md has the rules table");
    table
        .lines()
        .skip(3)
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_error_catalogue_names_every_declared_rule_and_no_other() {
    let pool = pool();
    let mut declared = std::collections::BTreeSet::new();
    for service in pool
        .services()
        .filter(|service| service.package_name() == "supportdesk.v1")
    {
        for method in service.methods() {
            for rule in declared_rules(&method.input(), "", 0) {
                declared.extend(rule_names(&rule.rules, ""));
            }
        }
    }
    assert!(declared.contains("string.max_len") && declared.contains("charge.amount"));
    assert_eq!(
        catalogued_rules(),
        declared,
        "docs/errors.md (\"Which declared rule refuses what\") and the protos' rules differ"
    );
}

/// Item by item, the address rule of the service (CreateUser), of both clients' checks (the
/// declared pattern and CEL rule) and of the mail library the service sends with (lettre, on the
/// address as stored: trimmed, lower-cased) is one rule; where the declared rule is narrower than
/// what mail could carry, the case says why.
#[tokio::test]
async fn one_address_rule_holds_in_the_service_both_clients_and_the_mail_library() {
    use std::str::FromStr;
    let app = TestApp::spawn().await;
    let local_64 = format!("{}@example.com", "l".repeat(64));
    let local_65 = format!("{}@example.com", "l".repeat(65));
    // (address, accepted by the service and its clients, why lettre would take it anyway)
    let cases: Vec<(String, bool, Option<&str>)> = [
        ("jane@example.com", true, None),
        ("Jane.Doe+support@Example.COM", true, None),
        (" o'brien{x}@mail.example.co.uk\t", true, None),
        ("jane@bücher.example", true, None),
        ("jane@xn--bcher-kva.example", true, None),
        (&local_64, true, None),
        (&address_of_length(254), true, None),
        ("a..b@example.com", false, None),
        (".jane@example.com", false, None),
        ("jane.@example.com", false, None),
        ("a,b@example.com", false, None),
        ("jane(comment)@example.com", false, None),
        ("jane@-example.com", false, None),
        ("jane@example-.com", false, None),
        ("jane@", false, None),
        (&local_65, false, None),
        ("\"jane\"@example.com", false, Some("a quoted local part")),
        ("josé@example.com", false, Some("a local part beyond ASCII")),
        ("jane@localhost", false, Some("a domain without a dot")),
        ("jane@[127.0.0.1]", false, Some("an IP literal")),
        (
            "jane@exa_mple.com",
            false,
            Some("a label beyond letters, digits and hyphens"),
        ),
        (
            &address_of_length(255),
            false,
            Some("over RFC 5321's 254 characters"),
        ),
    ]
    .into_iter()
    .map(|(address, accepted, why)| (address.to_owned(), accepted, why))
    .collect();

    let mut client_cases = Vec::new();
    for (address, accepted, lettre_differs) in &cases {
        let request = v1::CreateUserRequest {
            user: Some(v1::User {
                email: address.clone(),
                role: v1::UserRole::Agent.into(),
                ..Default::default()
            }),
            password: "a password of some length".into(),
        }
        .encode_to_vec();
        let status = answer(
            &app,
            "/supportdesk.v1.UserService/CreateUser",
            false,
            request.clone(),
        )
        .await;
        assert_eq!(
            !names(&status, "user.email"),
            *accepted,
            "the service on {address:?}: {:?} {:?}",
            status.code(),
            status.message()
        );
        let stored = address.trim().to_lowercase();
        let lettre_accepts = lettre::Address::from_str(&stored).is_ok();
        assert_eq!(
            lettre_accepts,
            *accepted || lettre_differs.is_some(),
            "lettre on {stored:?}"
        );
        client_cases.push(ClientCase {
            label: format!("{address:?}"),
            message: "supportdesk.v1.CreateUserRequest".into(),
            path: "user.email".into(),
            accepted: *accepted,
            request,
        });
    }
    for (client, verdicts) in verdicts_of_each_client(&client_cases) {
        for (case, violations) in client_cases.iter().zip(verdicts) {
            assert_eq!(
                !violations.iter().any(|field| field == "user.email"),
                case.accepted,
                "{client} on {}: {violations:?}",
                case.label
            );
        }
    }
}

/// The most items a list of a request may hold, whatever the list (docs/http-contract.md,
/// "Requests").
const MOST_LIST_ITEMS: i64 = 32;

/// Lists a request may carry that are not ours to declare a bound on (a well-known or vendored
/// message), with what bounds them instead.
const LISTS_BOUNDED_ELSEWHERE: &[(&str, &str)] = &[
    (
        "supportdesk.v1.CustomField.choices",
        "declared at 200 (domain::custom_field::MAX_OPTIONS): a field's options, each a short \
         key; a refusal names only the first bad one, so the answer stays small",
    ),
    (
        "supportdesk.v1.CountViewsRequest.view_ids",
        "declared at 50 (domain::view::MAX_VIEWS_COUNTED): a desk's side panel counts its views \
         in one call; each id is a UUID, so a refusal stays small",
    ),
    (
        "supportdesk.v1.Schedule.holidays",
        "at most 200 (domain::schedule::MAX_HOLIDAYS): several years of a country's public \
         holidays; each refused item is named by its index, and a refusal of the count is one \
         violation",
    ),
    (
        "google.protobuf.FieldMask.paths",
        "the service refuses a mask at its first unknown path, in one violation",
    ),
    (
        "google.protobuf.ListValue.values",
        "a multiple_choice value (Ticket.custom_fields): refused at its first item that is not \
         one of the field's options (at most 200), in one violation; repeated options collapse",
    ),
    (
        "google.api.HttpBody.extensions",
        "never read: the raw body is the request",
    ),
];

/// Every list field reachable from `message` (nested messages included, once each), by its
/// message's full name and its own name.
fn lists_of(
    message: &MessageDescriptor,
    seen: &mut std::collections::BTreeSet<String>,
) -> Vec<FieldDescriptor> {
    if !seen.insert(message.full_name().to_owned()) {
        return Vec::new();
    }
    let mut lists = Vec::new();
    for field in message.fields() {
        if field.is_list() {
            lists.push(field.clone());
        }
        if let Kind::Message(inner) = field.kind() {
            lists.extend(lists_of(&inner, seen));
        }
    }
    lists
}

/// Issue 67, item 19: `statuses` and `priorities` had no bound, and 300 refused values made an
/// answer too large for Envoy and gRPC clients. Every list a client can send is bounded in the
/// declared contract, where protovalidate, the OpenAPI document and the service read it.
#[test]
fn every_list_a_request_carries_declares_at_most_32_items() {
    let pool = pool();
    let extension = pool
        .get_extension_by_name("buf.validate.field")
        .expect("the protos import buf/validate/validate.proto");
    let output_only = pool
        .get_extension_by_name("google.api.field_behavior")
        .expect("field_behavior");
    let mut unbounded = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for service in pool.services() {
        for method in service.methods() {
            for field in lists_of(&method.input(), &mut seen) {
                let name = field.full_name().to_owned();
                if LISTS_BOUNDED_ELSEWHERE
                    .iter()
                    .any(|(list, _)| *list == name)
                {
                    continue;
                }
                let options = field.options();
                let behaviours = options.get_extension(&output_only).into_owned();
                // google.api.FieldBehavior OUTPUT_ONLY is 3.
                if behaviours.as_list().is_some_and(|values| {
                    values.iter().any(|value| value.as_enum_number() == Some(3))
                }) {
                    // OUTPUT_ONLY: what a client sends there is never read.
                    continue;
                }
                let maximum = options
                    .has_extension(&extension)
                    .then(|| options.get_extension(&extension).into_owned())
                    .and_then(|rules| sub_rules(rules.as_message()?, "repeated"))
                    .and_then(|repeated| number(&repeated, "max_items"));
                if maximum != Some(MOST_LIST_ITEMS) {
                    unbounded.push(format!("{name}: max_items {maximum:?}"));
                }
            }
        }
    }
    assert!(
        unbounded.is_empty(),
        "lists of requests without `(buf.validate.field).repeated.max_items = {MOST_LIST_ITEMS}`:\n{}",
        unbounded.join("\n")
    );
}
