//! `supportdesk.v1.SlaPolicyService`: what is promised on which tickets (docs/sla.md, "SLA
//! policies").

use tonic::{Request, Response, Status};

use super::{KeyedRequest, ListPages, answer, created, required, scope, stored_as, uuid_field};
use crate::domain::{
    InvalidValue, PageTokenKeys, SlaCondition, SlaMetric, SlaPolicy, SlaPolicyDescription,
    SlaPolicyFields, SlaPolicyName, SlaTarget, SlaTargets, optional_uuid, policy_position,
    warning_minutes,
};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::service::{SlaPolicies, SlaPolicyUpdate};
use crate::wire::convert::sla_policy::target_priority;
use crate::wire::proto::v1;

/// The name page tokens of ListSlaPolicies carry.
const LIST: &str = "sla-policies";

pub struct SlaPolicyApi {
    policies: SlaPolicies,
    idempotency: IdempotencyPolicy,
    pages: PageTokenKeys,
}

impl SlaPolicyApi {
    pub fn new(
        policies: SlaPolicies,
        idempotency: IdempotencyPolicy,
        pages: PageTokenKeys,
    ) -> Self {
        Self {
            policies,
            idempotency,
            pages,
        }
    }
}

fn respond(policy: &SlaPolicy) -> Response<v1::SlaPolicy> {
    Response::new(v1::SlaPolicy::from(policy))
}

/// The targets a request sends, each refused part named `sla_policy.targets[i].<field>`.
fn targets_of(targets: &[v1::SlaTarget], violations: &mut FieldViolations) -> Option<SlaTargets> {
    let mut parsed = Vec::with_capacity(targets.len());
    for (index, target) in targets.iter().enumerate() {
        let field = |name: &str| format!("sla_policy.targets[{index}].{name}");
        let priority = violations.check(field("priority"), target_priority(target.priority));
        let metric = violations.check(field("metric"), SlaMetric::try_from(target.metric));
        if let (Some(priority), Some(metric)) = (priority, metric) {
            let made = SlaTarget::new(
                priority,
                metric,
                i64::from(target.minutes),
                target.business_hours,
            );
            parsed.extend(violations.check(field("minutes"), made));
        }
    }
    if parsed.len() != targets.len() {
        return None;
    }
    match SlaTargets::parse(parsed) {
        Ok(targets) => Some(targets),
        Err(problem) => {
            let field = problem.index.map_or_else(
                || "sla_policy.targets".to_owned(),
                |index| format!("sla_policy.targets[{index}]"),
            );
            violations.add(field, &problem.problem);
            None
        }
    }
}

#[tonic::async_trait]
impl v1::sla_policy_service_server::SlaPolicyService for SlaPolicyApi {
    async fn create_sla_policy(
        &self,
        mut request: Request<v1::CreateSlaPolicyRequest>,
    ) -> Result<Response<v1::SlaPolicy>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let mut violations = FieldViolations::new();
        let Some(policy) = request.into_inner().sla_policy else {
            violations.add("sla_policy", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let name = violations.check("sla_policy.name", SlaPolicyName::parse(&policy.name));
        let description = violations.check(
            "sla_policy.description",
            SlaPolicyDescription::parse(&policy.description),
        );
        let position = violations.check(
            "sla_policy.position",
            policy_position(i64::from(policy.position)),
        );
        let condition = violations.check("sla_policy.filter", SlaCondition::parse(&policy.filter));
        let schedule_id =
            violations.check("sla_policy.schedule_id", optional_uuid(&policy.schedule_id));
        let targets = targets_of(&policy.targets, &mut violations);
        let warning = violations.check(
            "sla_policy.warning_minutes",
            warning_minutes(i64::from(policy.warning_minutes)),
        );
        let (
            Some(name),
            Some(description),
            Some(position),
            Some(condition),
            Some(schedule_id),
            Some(targets),
            Some(warning_minutes),
        ) = (
            name,
            description,
            position,
            condition,
            schedule_id,
            targets,
            warning,
        )
        else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let fields = SlaPolicyFields {
            name,
            description,
            position,
            condition,
            schedule_id,
            targets,
            warning_minutes,
        };
        let respond_created = |policy: &SlaPolicy| {
            created(respond(policy), &format!("/v1/slaPolicies/{}", policy.id))
        };
        let store = stored_as(&respond_created);
        let outcome = self.policies.create(&keyed.write(&store), fields).await?;
        answer(outcome, &respond_created)
    }

    async fn get_sla_policy(
        &self,
        mut request: Request<v1::GetSlaPolicyRequest>,
    ) -> Result<Response<v1::SlaPolicy>, Status> {
        let scope = scope(&mut request)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        Ok(respond(&self.policies.get(&scope, id).await?))
    }

    async fn list_sla_policies(
        &self,
        mut request: Request<v1::ListSlaPoliciesRequest>,
    ) -> Result<Response<v1::ListSlaPoliciesResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let pages = ListPages::new(&self.pages, caller, LIST);
        let (page_size, after) = pages.request(message.page_size, &message.page_token)?;
        let page = self.policies.list(&scope, page_size, after).await?;
        Ok(Response::new(v1::ListSlaPoliciesResponse {
            sla_policies: page.items.iter().map(v1::SlaPolicy::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn update_sla_policy(
        &self,
        mut request: Request<v1::UpdateSlaPolicyRequest>,
    ) -> Result<Response<v1::SlaPolicy>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let Some(policy) = message.sla_policy else {
            violations.add("sla_policy", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let id = violations.check("sla_policy.id", uuid_field(&policy.id));
        let paths = message
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        let fields = "name, description, position, filter, schedule_id, targets, warning_minutes";
        if paths.is_empty() {
            violations.add(
                "update_mask",
                &InvalidValue::new(format!("must name one or more of: {fields}")),
            );
        }
        let mut update = SlaPolicyUpdate::default();
        for path in &paths {
            match path.as_str() {
                "name" => {
                    update.name =
                        violations.check("sla_policy.name", SlaPolicyName::parse(&policy.name));
                }
                "description" => {
                    update.description = violations.check(
                        "sla_policy.description",
                        SlaPolicyDescription::parse(&policy.description),
                    );
                }
                "position" => {
                    update.position = violations.check(
                        "sla_policy.position",
                        policy_position(i64::from(policy.position)),
                    );
                }
                "filter" => {
                    update.condition =
                        violations.check("sla_policy.filter", SlaCondition::parse(&policy.filter));
                }
                "schedule_id" => {
                    update.schedule_id = violations
                        .check("sla_policy.schedule_id", optional_uuid(&policy.schedule_id));
                }
                "targets" => update.targets = targets_of(&policy.targets, &mut violations),
                "warning_minutes" => {
                    update.warning_minutes = violations.check(
                        "sla_policy.warning_minutes",
                        warning_minutes(i64::from(policy.warning_minutes)),
                    );
                }
                other => violations.add(
                    "update_mask",
                    &InvalidValue::new(format!(
                        "{other:?} cannot be changed; the fields are {fields}"
                    )),
                ),
            }
        }
        let Some(id) = id else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        if !violations.is_empty() {
            return Err(AppError::InvalidArgument(violations).into());
        }
        let store = stored_as(&respond);
        let outcome = self
            .policies
            .update(&keyed.write(&store), id, update)
            .await?;
        answer(outcome, &respond)
    }

    async fn delete_sla_policy(
        &self,
        mut request: Request<v1::DeleteSlaPolicyRequest>,
    ) -> Result<Response<v1::DeleteSlaPolicyResponse>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let respond = |(): &()| Response::new(v1::DeleteSlaPolicyResponse {});
        let store = stored_as(&respond);
        let outcome = self.policies.delete(&keyed.write(&store), id).await?;
        answer(outcome, &respond)
    }
}
