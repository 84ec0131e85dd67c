//! `supportdesk.v1.ApiKeyService`.

use tonic::{Request, Response, Status};

use super::users::{role_from_wire, role_to_wire};
use super::{
    IdempotencyRequest, created, created_metadata, next_page_token, optional_timestamp,
    page_request, request_context, required, respond, stored, timestamp,
};
use crate::domain::{self, ApiKeyId, ApiKeyName, InvalidValue, Role};
use crate::errors::{AppError, FieldViolations};
use crate::proto::v1;
use crate::service::ApiKeys;
use crate::service::idempotency::IdempotencyPolicy;

/// The name page tokens of ListApiKeys carry.
const LIST: &str = "api-keys";

pub struct ApiKeyApi {
    keys: ApiKeys,
    idempotency: IdempotencyPolicy,
}

impl ApiKeyApi {
    pub fn new(keys: ApiKeys, idempotency: IdempotencyPolicy) -> Self {
        Self { keys, idempotency }
    }
}

#[tonic::async_trait]
impl v1::api_key_service_server::ApiKeyService for ApiKeyApi {
    async fn create_api_key(
        &self,
        request: Request<v1::CreateApiKeyRequest>,
    ) -> Result<Response<v1::CreateApiKeyResponse>, Status> {
        let (caller, budget) = request_context(&request)?;
        caller.require(Role::Admin)?;
        // Required: a retry without a key would leave a second live credential behind.
        let idempotency = IdempotencyRequest::of(&request, Some(&caller), self.idempotency);
        idempotency.require()?;
        let mut violations = FieldViolations::new();
        let Some(key) = request.into_inner().api_key else {
            violations.add("api_key", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let name = violations.check("api_key.name", ApiKeyName::parse(&key.name));
        let roles = violations.check("api_key.roles", key_roles(&key.roles));
        let (Some(name), Some(roles)) = (name, roles) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        // The secret is never stored, not even for replays: a replay names the key so that it
        // can be revoked, and carries no secret.
        let encode = |key: &domain::ApiKey| {
            stored(
                &v1::CreateApiKeyResponse {
                    api_key: Some(api_key_to_wire(key.clone())),
                    secret: String::new(),
                },
                &created_metadata("/v1/apiKeys".to_owned()),
            )
        };
        let idempotent = idempotency.for_rpc("/supportdesk.v1.ApiKeyService/CreateApiKey", &encode);
        let (outcome, secret) = self
            .keys
            .create(&caller, name, roles, budget, idempotent.as_ref())
            .await?;
        // Keys are read in the list (no single-key GET): the location is the collection.
        respond(outcome, |key| {
            created(
                Response::new(v1::CreateApiKeyResponse {
                    api_key: Some(api_key_to_wire(key)),
                    secret: secret.reveal().to_owned(),
                }),
                "/v1/apiKeys",
            )
        })
    }

    async fn list_api_keys(
        &self,
        request: Request<v1::ListApiKeysRequest>,
    ) -> Result<Response<v1::ListApiKeysResponse>, Status> {
        let (caller, budget) = request_context(&request)?;
        caller.require(Role::Admin)?;
        let message = request.get_ref();
        let (page_size, after) = page_request(message.page_size, &message.page_token, LIST)?;
        let page = self.keys.list(&caller, page_size, after, budget).await?;
        Ok(Response::new(v1::ListApiKeysResponse {
            api_keys: page.items.into_iter().map(api_key_to_wire).collect(),
            next_page_token: next_page_token(page.next, LIST),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<v1::RevokeApiKeyRequest>,
    ) -> Result<Response<v1::ApiKey>, Status> {
        let (caller, budget) = request_context(&request)?;
        caller.require(Role::Admin)?;
        let idempotency = IdempotencyRequest::of(&request, Some(&caller), self.idempotency);
        let id = ApiKeyId::parse(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let encode = |key: &domain::ApiKey| stored(&api_key_to_wire(key.clone()), &[]);
        let idempotent = idempotency.for_rpc("/supportdesk.v1.ApiKeyService/RevokeApiKey", &encode);
        let outcome = self
            .keys
            .revoke(&caller, id, budget, idempotent.as_ref())
            .await?;
        respond(outcome, |key| Response::new(api_key_to_wire(key)))
    }
}

/// A key's roles: at least one, admin or agent only, duplicates folded.
fn key_roles(wire: &[i32]) -> Result<Vec<Role>, InvalidValue> {
    if wire.is_empty() {
        return Err(InvalidValue::new(
            "must name at least one of USER_ROLE_ADMIN, USER_ROLE_AGENT",
        ));
    }
    let mut roles = Vec::new();
    for value in wire {
        match role_from_wire(*value)? {
            Role::Customer => {
                return Err(InvalidValue::new(
                    "USER_ROLE_CUSTOMER is for people; a key may be admin or agent",
                ));
            }
            role @ (Role::Agent | Role::Admin) => {
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
        }
    }
    Ok(roles)
}

fn api_key_to_wire(key: domain::ApiKey) -> v1::ApiKey {
    v1::ApiKey {
        id: key.id.to_string(),
        name: key.name.as_str().to_owned(),
        prefix: key.prefix,
        roles: key
            .roles
            .into_iter()
            .map(|role| role_to_wire(role).into())
            .collect(),
        create_time: Some(timestamp(key.created_at)),
        last_use_time: optional_timestamp(key.last_used_at),
        revoke_time: optional_timestamp(key.revoked_at),
    }
}
