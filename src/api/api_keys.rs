//! `supportdesk.v1.ApiKeyService`.

use tonic::{Request, Response, Status};

use super::{KeyedRequest, ListPages, answer, created, required, scope, stored_as};
use crate::domain::{
    self, ApiKeyId, ApiKeyName, InvalidValue, PageTokenKeys, Role, within_list_bound,
};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::service::ApiKeys;
use crate::wire::proto::v1;

/// The name page tokens of ListApiKeys carry.
const LIST: &str = "api-keys";

pub struct ApiKeyApi {
    keys: ApiKeys,
    idempotency: IdempotencyPolicy,
    pages: PageTokenKeys,
}

impl ApiKeyApi {
    pub fn new(keys: ApiKeys, idempotency: IdempotencyPolicy, pages: PageTokenKeys) -> Self {
        Self {
            keys,
            idempotency,
            pages,
        }
    }
}

#[tonic::async_trait]
impl v1::api_key_service_server::ApiKeyService for ApiKeyApi {
    async fn create_api_key(
        &self,
        mut request: Request<v1::CreateApiKeyRequest>,
    ) -> Result<Response<v1::CreateApiKeyResponse>, Status> {
        // Declared IDEMPOTENCY_REQUIRED: a retry without a key would leave a second live
        // credential behind.
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
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
        // Keys are read in the list (no single-key GET): the location is the collection.
        let respond_with_secret = |key: &domain::ApiKey, secret: &str| {
            created(
                Response::new(v1::CreateApiKeyResponse {
                    api_key: Some(v1::ApiKey::from(key.clone())),
                    secret: secret.to_owned(),
                }),
                "/v1/apiKeys",
            )
        };
        // The secret is never stored, not even for replays: a replay names the key so that it
        // can be revoked, and carries no secret.
        let without_secret = |key: &domain::ApiKey| respond_with_secret(key, "");
        let store = stored_as(&without_secret);
        let (outcome, secret) = self.keys.create(&keyed.write(&store), name, roles).await?;
        answer(outcome, &|key: &domain::ApiKey| {
            respond_with_secret(key, secret.reveal())
        })
    }

    async fn list_api_keys(
        &self,
        mut request: Request<v1::ListApiKeysRequest>,
    ) -> Result<Response<v1::ListApiKeysResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let pages = ListPages::new(&self.pages, caller, LIST);
        let (page_size, after) = pages.request(message.page_size, &message.page_token)?;
        let page = self.keys.list(&scope, page_size, after).await?;
        Ok(Response::new(v1::ListApiKeysResponse {
            api_keys: page.items.into_iter().map(v1::ApiKey::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn revoke_api_key(
        &self,
        mut request: Request<v1::RevokeApiKeyRequest>,
    ) -> Result<Response<v1::ApiKey>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let id = ApiKeyId::parse(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let respond = |key: &domain::ApiKey| Response::new(v1::ApiKey::from(key.clone()));
        let store = stored_as(&respond);
        let outcome = self.keys.revoke(&keyed.write(&store), id).await?;
        answer(outcome, &respond)
    }
}

/// A key's roles: at least one, admin or agent only, duplicates folded.
fn key_roles(wire: &[i32]) -> Result<Vec<Role>, InvalidValue> {
    if wire.is_empty() {
        return Err(InvalidValue::new(
            "must name at least one of USER_ROLE_ADMIN, USER_ROLE_AGENT",
        ));
    }
    within_list_bound(wire, "roles")?;
    let mut roles = Vec::new();
    for value in wire {
        match Role::try_from(*value)? {
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
