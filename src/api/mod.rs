//! The gRPC surface: one module per proto service, each converting wire messages to domain types
//! (naming every refused field), calling `service/`, and converting the result back. Nothing here
//! holds business rules. Conversions between the messages and the domain are `From`/`TryFrom`
//! impls in `wire::convert`, one file per resource, which the webhooks we send share; the
//! conversions of what only one service answers (a service's own report types) stay beside its
//! handlers.

pub mod accounts;
pub mod api_keys;
pub mod attachments;
pub mod auth;
pub mod billing;
pub mod custom_fields;
pub mod dashboard;
pub mod events;
pub mod groups;
pub mod notifications;
pub mod operations;
pub mod schedules;
pub mod sla_policies;
pub mod tickets;
pub mod users;
pub mod views;
pub mod webhook_endpoints;
pub mod webhooks;

use tonic::Request;

use crate::auth::Caller;
use crate::domain::IdempotencyKey;
use crate::domain::{
    AccountId, CountedPageCursor, InvalidValue, PageCursor, PageScope, PageSize, PageTokenKeys,
    TextPageCursor, hyphenated_uuid,
};
use crate::errors::{AppError, AppResult, FieldViolations};
use crate::idempotency::{
    IdempotencyPolicy, Idempotent, KeyedWrite, Outcome, StoredResponse, caller_scope, fingerprint,
};
use crate::scope::{ClientAddress, RequestScope};
pub(crate) use crate::wire::convert::timestamp;
use crate::wire::methods::Access;

/// The request's scope, as the middleware stack established it (the caller, the deadline, the
/// method, the key, the client, what admission prefetched), taken out of the request rather than
/// cloned: the handler owns it and lends it to the service. Its absence is a wiring bug, so it
/// fails closed.
pub(crate) fn scope<T>(request: &mut Request<T>) -> AppResult<RequestScope> {
    let scope = request
        .extensions_mut()
        .remove::<RequestScope>()
        .ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "no RequestScope: is the admission layer in the stack?"
            ))
        })?;
    // Before the request is read, as admission would have: an RPC that is not public has a
    // caller, or the stack is miswired.
    if scope.optional_caller().is_none()
        && !scope
            .method()
            .is_ok_and(|method| method.access == Access::Public)
    {
        scope.caller()?;
    }
    Ok(scope)
}

/// The page tokens of one list as one caller sees it: tokens are signed with the server's keys
/// and bound to the caller's account and to `list` (which names the query where it has one).
pub(crate) struct ListPages<'a> {
    keys: &'a PageTokenKeys,
    account: AccountId,
    list: String,
}

impl<'a> ListPages<'a> {
    pub(crate) fn new(keys: &'a PageTokenKeys, caller: &Caller, list: &str) -> Self {
        Self {
            keys,
            account: caller.account_id,
            list: list.to_owned(),
        }
    }

    /// What this list's tokens are bound to.
    fn scope(&self) -> PageScope<'_> {
        PageScope {
            account: self.account,
            list: &self.list,
        }
    }

    /// A list of one parent's entries (a ticket's comments, its activity): the parent's id, read
    /// from the request's `field` by `parent`, and the page of the list `{list}:{id}`, with every
    /// refused field named in one answer.
    pub(crate) fn of_parent<Id: std::fmt::Display>(
        keys: &'a PageTokenKeys,
        caller: &Caller,
        list: &str,
        (field, parent): (&str, Result<Id, InvalidValue>),
        (page_size, page_token): (i32, &str),
    ) -> AppResult<(Id, Self, PageSize, Option<PageCursor>)> {
        let mut violations = FieldViolations::new();
        let parent = violations.check(field, parent);
        let list = parent.as_ref().map(|parent| format!("{list}:{parent}"));
        let page = Self::checked(
            keys,
            caller,
            list.as_deref(),
            &mut violations,
            page_size,
            page_token,
        );
        match (parent, page) {
            (Some(parent), Some((pages, size, after))) => Ok((parent, pages, size, after)),
            _ => Err(AppError::InvalidArgument(violations)),
        }
    }

    /// `page_size` and `page_token` of a List request, both checked.
    pub(crate) fn request(
        &self,
        page_size: i32,
        page_token: &str,
    ) -> AppResult<(PageSize, Option<PageCursor>)> {
        let mut violations = FieldViolations::new();
        let size = violations.check("page_size", PageSize::parse(page_size));
        let after = match page_token {
            "" => None,
            token => violations.check("page_token", self.keys.parse(token, self.scope())),
        };
        match size {
            Some(size) if violations.is_empty() => Ok((size, after)),
            _ => Err(AppError::InvalidArgument(violations)),
        }
    }

    /// The pages of the list `list` with the `page_size` and `page_token` of its request, checked
    /// into `violations` with the request's other fields, so one answer names every refused
    /// field. `list` is `None` when the request's query (the filters the list name is made of)
    /// was refused: the token is signed for one query, so only its form is checked, and the
    /// client learns whether it fits the query once the query is valid (docs/http-contract.md).
    /// `None` when either field was refused.
    pub(crate) fn checked(
        keys: &'a PageTokenKeys,
        caller: &Caller,
        list: Option<&str>,
        violations: &mut FieldViolations,
        page_size: i32,
        page_token: &str,
    ) -> Option<(Self, PageSize, Option<PageCursor>)> {
        Self::checked_with(
            keys,
            caller,
            list,
            violations,
            (page_size, page_token),
            PageTokenKeys::parse,
        )
    }

    /// [`Self::checked`] for a list whose items are keyed by text (webhook events).
    pub(crate) fn checked_text(
        keys: &'a PageTokenKeys,
        caller: &Caller,
        list: Option<&str>,
        violations: &mut FieldViolations,
        page_size: i32,
        page_token: &str,
    ) -> Option<(Self, PageSize, Option<TextPageCursor>)> {
        Self::checked_with(
            keys,
            caller,
            list,
            violations,
            (page_size, page_token),
            PageTokenKeys::parse_text,
        )
    }

    /// [`Self::checked`] for a list ordered by a count, then a text key (the account's tags).
    pub(crate) fn checked_counted(
        keys: &'a PageTokenKeys,
        caller: &Caller,
        list: Option<&str>,
        violations: &mut FieldViolations,
        page_size: i32,
        page_token: &str,
    ) -> Option<(Self, PageSize, Option<CountedPageCursor>)> {
        Self::checked_with(
            keys,
            caller,
            list,
            violations,
            (page_size, page_token),
            PageTokenKeys::parse_counted,
        )
    }

    /// Both of the above, with the token read into the cursor type of the list by `parse`.
    fn checked_with<Cursor>(
        keys: &'a PageTokenKeys,
        caller: &Caller,
        list: Option<&str>,
        violations: &mut FieldViolations,
        (page_size, page_token): (i32, &str),
        parse: impl for<'s> FnOnce(&PageTokenKeys, &str, PageScope<'s>) -> Result<Cursor, InvalidValue>,
    ) -> Option<(Self, PageSize, Option<Cursor>)> {
        let size = violations.check("page_size", PageSize::parse(page_size));
        let Some(list) = list else {
            check_token_form(violations, page_token);
            return None;
        };
        let pages = Self::new(keys, caller, list);
        let after = match page_token {
            "" => Some(None),
            token => violations
                .check("page_token", parse(keys, token, pages.scope()))
                .map(Some),
        };
        Some((pages, size?, after?))
    }

    /// The token of the page after `cursor`, or empty on the last page.
    pub(crate) fn next_token(&self, cursor: Option<PageCursor>) -> String {
        cursor
            .map(|cursor| self.keys.encode(&cursor, self.scope()))
            .unwrap_or_default()
    }

    /// [`Self::next_token`] for a list ordered by a count, then a text key.
    pub(crate) fn next_counted_token(&self, cursor: Option<&CountedPageCursor>) -> String {
        cursor
            .map(|cursor| self.keys.encode_counted(cursor, self.scope()))
            .unwrap_or_default()
    }

    /// [`Self::next_token`] for a list whose items are keyed by text.
    pub(crate) fn next_text_token(&self, cursor: Option<&TextPageCursor>) -> String {
        cursor
            .map(|cursor| self.keys.encode_text(cursor, self.scope()))
            .unwrap_or_default()
    }
}

/// The page token of a list whose query was refused: only its form can be checked.
fn check_token_form(violations: &mut FieldViolations, page_token: &str) {
    if !page_token.is_empty() {
        violations.check("page_token", PageTokenKeys::check_form(page_token));
    }
}

/// A required field that was left out.
pub(crate) fn required() -> InvalidValue {
    InvalidValue::new("is required")
}

/// A required id: a UUID in its hyphenated form, the one form the service writes.
pub(crate) fn uuid_field(raw: &str) -> Result<uuid::Uuid, InvalidValue> {
    if raw.is_empty() {
        return Err(required());
    }
    hyphenated_uuid(raw).ok_or_else(|| InvalidValue::new("must be a UUID in its hyphenated form"))
}

/// Marks `response` as having created the resource at `location` (HTTP `Location`). The 201
/// itself comes from the RPC's declaration (`http_success`), applied by the method layer.
pub(crate) fn created<T>(mut response: tonic::Response<T>, location: &str) -> tonic::Response<T> {
    if let Ok(value) = location.parse() {
        response.metadata_mut().insert("location", value);
    }
    response
}

/// A write request as its handler holds it: the request's scope (taken out of the request) and,
/// when it carries an idempotency key, the key's claim: the caller's scope of keys, the RPC and
/// the request's fingerprint. The ceremony of every keyed write is written here once (taking the
/// scope out fails closed as [`scope`] does):
///
/// ```text
/// let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;  // before the message is taken
/// let outcome = self.service.write(&keyed.write(&stored_as(&respond)), ...).await?;
/// answer(outcome, &respond)  // a fresh success, a stored failure or a replay
/// ```
pub(crate) struct KeyedRequest {
    scope: RequestScope,
    claim: Option<KeyClaim>,
}

/// What a keyed request claims its key with.
struct KeyClaim {
    key: IdempotencyKey,
    caller: String,
    rpc: &'static str,
    hash: Vec<u8>,
    policy: IdempotencyPolicy,
}

impl KeyedRequest {
    /// Takes the scope out of `request` and, when it carries a key, fingerprints the message,
    /// which has no secret fields.
    pub(crate) fn of<T: prost::Message>(
        request: &mut Request<T>,
        policy: &IdempotencyPolicy,
    ) -> AppResult<Self> {
        let scope = scope(request)?;
        Self::with_scope(scope, request.get_ref(), policy)
    }

    /// [`Self::of`] for a request whose scope was taken already: a stream, whose first message
    /// is the one fingerprinted.
    pub(crate) fn with_scope(
        scope: RequestScope,
        message: &impl prost::Message,
        policy: &IdempotencyPolicy,
    ) -> AppResult<Self> {
        let claim = match scope.idempotency_key() {
            Some(key) => Some(KeyClaim::of(key, &scope, policy, &message.encode_to_vec())?),
            None => None,
        };
        Ok(Self { scope, claim })
    }

    /// [`Self::of`] for a message with secret fields (a password), which `clear_secrets` empties
    /// before the message is fingerprinted: a retry that differs only in a secret replays.
    pub(crate) fn of_with_secrets<T: prost::Message + Clone>(
        request: &mut Request<T>,
        policy: &IdempotencyPolicy,
        clear_secrets: impl FnOnce(&mut T),
    ) -> AppResult<Self> {
        let scope = scope(request)?;
        let claim = match scope.idempotency_key() {
            Some(key) => {
                let mut without_secrets = request.get_ref().clone();
                clear_secrets(&mut without_secrets);
                Some(KeyClaim::of(
                    key,
                    &scope,
                    policy,
                    &without_secrets.encode_to_vec(),
                )?)
            }
            None => None,
        };
        Ok(Self { scope, claim })
    }

    /// The request's scope.
    pub(crate) fn scope(&self) -> &RequestScope {
        &self.scope
    }

    /// The write as the service takes it: the scope, and with a key, outcomes stored as `store`
    /// says (usually [`stored_as`] the handler's `respond`: the answer stored is the answer
    /// given).
    pub(crate) fn write<'a, D>(&'a self, store: &'a StoreSuccess<'a, D>) -> KeyedWrite<'a, D> {
        self.phased_write(store, &[])
    }

    /// [`Self::write`] for an RPC that commits in phases and may stop at `phases`.
    pub(crate) fn phased_write<'a, D>(
        &'a self,
        store: &'a StoreSuccess<'a, D>,
        phases: &'static [&'static str],
    ) -> KeyedWrite<'a, D> {
        KeyedWrite {
            scope: &self.scope,
            idempotent: self.claim.as_ref().map(|claim| Idempotent {
                caller: claim.caller.clone(),
                rpc: claim.rpc,
                key: claim.key.clone(),
                request_hash: claim.hash.clone(),
                policy: claim.policy.clone(),
                store_success: store,
                store_failure: stored_failure,
                phases,
            }),
        }
    }
}

impl KeyClaim {
    fn of(
        key: &IdempotencyKey,
        scope: &RequestScope,
        policy: &IdempotencyPolicy,
        fingerprinted: &[u8],
    ) -> AppResult<Self> {
        Ok(Self {
            key: key.clone(),
            caller: caller_scope(
                scope.optional_caller(),
                scope.client().map_or("unknown", ClientAddress::as_str),
                &policy.fingerprint_key,
            ),
            rpc: &scope.method()?.path,
            hash: fingerprint(&policy.fingerprint_key, fingerprinted),
            policy: policy.clone(),
        })
    }
}

/// A response as stored for replays: its encoded message and ASCII metadata.
fn stored_response<R: prost::Message>(response: &tonic::Response<R>) -> StoredResponse {
    let metadata = response
        .metadata()
        .iter()
        .filter_map(|entry| match entry {
            tonic::metadata::KeyAndValueRef::Ascii(name, value) => {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            }
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        })
        .collect();
    StoredResponse::Success {
        body: response.get_ref().encode_to_vec(),
        metadata,
    }
}

/// How a success is stored: exactly the response `respond` answers it with, encoded.
pub(crate) fn stored_as<D, R: prost::Message>(
    respond: &(impl Fn(&D) -> tonic::Response<R> + Sync),
) -> impl Fn(&D) -> StoredResponse + Send + Sync + '_ {
    move |value| stored_response(&respond(value))
}

/// How a write's success is stored for replays ([`stored_as`]).
pub(crate) type StoreSuccess<'a, D> = dyn Fn(&D) -> StoredResponse + Send + Sync + 'a;

/// How a final error is stored: the status it is answered with.
fn stored_failure(error: &AppError) -> StoredResponse {
    let status = tonic::Status::from(error);
    StoredResponse::Failure {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: status.details().to_vec(),
    }
}

/// The answer to `outcome`: a fresh success is answered by `respond`, a failure with its status,
/// a replay with the stored outcome, marked `idempotent-replayed: true`.
pub(crate) fn answer<D, R: prost::Message + Default>(
    outcome: Outcome<D>,
    respond: &impl Fn(&D) -> tonic::Response<R>,
) -> Result<tonic::Response<R>, tonic::Status> {
    let replayed = tonic::metadata::MetadataValue::from_static("true");
    match outcome {
        Outcome::Done(value) => Ok(respond(&value)),
        Outcome::Failed(error) => Err(error.into()),
        Outcome::Replay(StoredResponse::Success { body, metadata }) => {
            let body = R::decode(body.as_slice()).map_err(|error| {
                AppError::internal(anyhow::anyhow!("a stored response: {error}"))
            })?;
            let mut response = tonic::Response::new(body);
            for (name, value) in metadata {
                if let (Ok(name), Ok(value)) = (
                    tonic::metadata::MetadataKey::from_bytes(name.as_bytes()),
                    value.parse(),
                ) {
                    response.metadata_mut().insert(name, value);
                }
            }
            response
                .metadata_mut()
                .insert(IDEMPOTENT_REPLAYED, replayed);
            Ok(response)
        }
        Outcome::Replay(StoredResponse::Failure {
            code,
            message,
            details,
        }) => {
            let mut status =
                tonic::Status::with_details(tonic::Code::from(code), message, details.into());
            crate::errors::declare_http_status(&mut status);
            status.metadata_mut().insert(IDEMPOTENT_REPLAYED, replayed);
            Err(status)
        }
    }
}

/// The response metadata entry that marks a replayed outcome.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
