//! Every ErrorInfo `reason` a client can receive, as one enum: code names a variant, never the
//! text, and the text is written once, here. docs/errors.md's catalogue lists the same reasons,
//! and tests/api/cross_cutting/error_reasons.rs fails when the two differ or when a reason has no test.

use std::fmt;

/// Declares [`Reason`] with its wire text and [`Reason::ALL`] from one list, so that no variant
/// can be missing from `ALL`.
macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $variant:ident = $text:literal,)+) => {
        /// An ErrorInfo reason, as clients match on it (docs/errors.md). Variants marked (Envoy)
        /// are answered by Envoy in front of the service (deploy/envoy/envoy.yaml), never by the
        /// service itself.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[doc = $doc])* $variant,)+
        }

        impl Reason {
            /// Every reason, in the order of docs/errors.md's catalogue.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The reason as sent: the wire contract, UPPER_SNAKE_CASE.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }
    };
}

reasons! {
    /// A field's value is refused; `BadRequest` names every such field.
    InvalidArgument = "INVALID_ARGUMENT",
    /// A webhook delivery without its signature (`Stripe-Signature`; the `svix-*` headers).
    WebhookSignatureMissing = "WEBHOOK_SIGNATURE_MISSING",
    /// A webhook delivery whose signature headers do not parse.
    WebhookSignatureMalformed = "WEBHOOK_SIGNATURE_MALFORMED",
    /// A genuine webhook signature whose timestamp is outside the tolerance.
    WebhookSignatureStale = "WEBHOOK_SIGNATURE_STALE",
    /// No signature of the webhook delivery matches a configured secret.
    WebhookSignatureMismatch = "WEBHOOK_SIGNATURE_MISMATCH",
    /// A correctly signed webhook body that is not an event.
    WebhookPayloadInvalid = "WEBHOOK_PAYLOAD_INVALID",
    /// The request body is not a protobuf message of the RPC's request type.
    MalformedMessage = "MALFORMED_MESSAGE",
    /// A REST body or query names another resource than the path.
    PathBodyMismatch = "PATH_BODY_MISMATCH",
    /// The idempotency key was used for a different request.
    IdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED",
    /// (Envoy) The JSON body does not parse, or a value has the wrong type.
    MalformedRequest = "MALFORMED_REQUEST",
    /// (Envoy) A query parameter the request message does not have.
    UnknownQueryParameter = "UNKNOWN_QUERY_PARAMETER",
    /// (Envoy) A member of the JSON body the request does not have.
    UnknownField = "UNKNOWN_FIELD",
    /// (Envoy) A body sent with another content type than the operation takes.
    UnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE",
    /// No credentials on an RPC that needs a caller.
    MissingCredentials = "MISSING_CREDENTIALS",
    /// A token, key or login that cannot be believed.
    InvalidCredentials = "INVALID_CREDENTIALS",
    /// The access token's time is up.
    TokenExpired = "TOKEN_EXPIRED",
    /// The user was deactivated.
    UserDeactivated = "USER_DEACTIVATED",
    /// The API key was revoked.
    ApiKeyRevoked = "API_KEY_REVOKED",
    /// A rotated refresh token presented again: the session is revoked.
    RefreshTokenReused = "REFRESH_TOKEN_REUSED",
    /// The access token's session has ended (logout, password reset): refused at once.
    SessionRevoked = "SESSION_REVOKED",
    /// A password token that is unknown, or of another account.
    PasswordTokenInvalid = "PASSWORD_TOKEN_INVALID",
    /// A password token past its lifetime.
    PasswordTokenExpired = "PASSWORD_TOKEN_EXPIRED",
    /// A password token that already set a password.
    PasswordTokenUsed = "PASSWORD_TOKEN_USED",
    /// The caller's role is below the RPC's least role.
    RoleRequired = "ROLE_REQUIRED",
    /// An API key called an RPC only people may call.
    UserRequired = "USER_REQUIRED",
    /// (Envoy) A browser's preflight from an origin that is not in `CORS_ALLOWED_ORIGINS`.
    OriginNotAllowed = "ORIGIN_NOT_ALLOWED",
    /// No API key with this id in the caller's account.
    ApiKeyNotFound = "API_KEY_NOT_FOUND",
    /// No charge with this id that the caller may see.
    ChargeNotFound = "CHARGE_NOT_FOUND",
    /// No ticket with this id that the caller may see.
    TicketNotFound = "TICKET_NOT_FOUND",
    /// No user with this id in the caller's account.
    UserNotFound = "USER_NOT_FOUND",
    /// No webhook event with this id in the caller's account.
    WebhookEventNotFound = "WEBHOOK_EVENT_NOT_FOUND",
    /// No event with this id in the caller's account.
    EventNotFound = "EVENT_NOT_FOUND",
    /// No webhook endpoint with this id in the caller's account.
    WebhookEndpointNotFound = "WEBHOOK_ENDPOINT_NOT_FOUND",
    /// No delivery with this id to this endpoint of the caller's account.
    WebhookDeliveryNotFound = "WEBHOOK_DELIVERY_NOT_FOUND",
    /// No notification with this id in the caller's account.
    NotificationNotFound = "NOTIFICATION_NOT_FOUND",
    /// The caller's account does not suppress this address.
    SuppressionNotFound = "SUPPRESSION_NOT_FOUND",
    /// No attachment with this id that the caller may see.
    AttachmentNotFound = "ATTACHMENT_NOT_FOUND",
    /// No long-running operation with this name in the caller's account.
    OperationNotFound = "OPERATION_NOT_FOUND",
    /// No group with this id in the caller's account (or, for a change, no live one).
    GroupNotFound = "GROUP_NOT_FOUND",
    /// The user is not a member of the group.
    GroupMemberNotFound = "GROUP_MEMBER_NOT_FOUND",
    /// No custom field with this id in the caller's account.
    CustomFieldNotFound = "CUSTOM_FIELD_NOT_FOUND",
    /// No view with this id that the caller may see.
    ViewNotFound = "VIEW_NOT_FOUND",
    /// No schedule with this id in the caller's account (or, for a change, no live one).
    ScheduleNotFound = "SCHEDULE_NOT_FOUND",
    /// No SLA policy with this id in the caller's account (or, for a change, no live one).
    SlaPolicyNotFound = "SLA_POLICY_NOT_FOUND",
    /// (Envoy) No RPC is mapped to this method and path.
    UnknownPath = "UNKNOWN_PATH",
    /// (Envoy) A known path called with a method no RPC maps there; `Allow` lists those that do.
    MethodNotAllowed = "METHOD_NOT_ALLOWED",
    /// Another account has this slug.
    AccountSlugTaken = "ACCOUNT_SLUG_TAKEN",
    /// The account has a user with this email.
    UserEmailTaken = "USER_EMAIL_TAKEN",
    /// A live group of the account has this name, whatever its case.
    GroupNameTaken = "GROUP_NAME_TAKEN",
    /// A live schedule of the account has this name, whatever its case.
    ScheduleNameTaken = "SCHEDULE_NAME_TAKEN",
    /// A live SLA policy of the account has this name, whatever its case.
    SlaPolicyNameTaken = "SLA_POLICY_NAME_TAKEN",
    /// The account has a custom field with this key (retired or not).
    CustomFieldKeyTaken = "CUSTOM_FIELD_KEY_TAKEN",
    /// The `etag` sent is not the resource's current one.
    EtagMismatch = "ETAG_MISMATCH",
    /// The first request with this idempotency key is still running.
    IdempotencyKeyInUse = "IDEMPOTENCY_KEY_IN_USE",
    /// PostgreSQL rolled the request's transaction back to end a deadlock or a serialization
    /// failure with another one; nothing was written (ABORTED, with RetryInfo).
    TransactionConflict = "TRANSACTION_CONFLICT",
    /// The requester has as many open tickets as allowed.
    OpenTicketLimit = "OPEN_TICKET_LIMIT",
    /// The ticket is closed, which is final.
    TicketClosed = "TICKET_CLOSED",
    /// The ticket's status does not allow this change.
    IllegalTransition = "ILLEGAL_TRANSITION",
    /// Resolving a ticket that has no assignee.
    TicketUnassigned = "TICKET_UNASSIGNED",
    /// CompleteUpload or GetDownloadUrl on an attachment whose file is not (yet) in storage.
    UploadIncomplete = "UPLOAD_INCOMPLETE",
    /// The uploaded object differs from what CreateUpload declared; the object was deleted.
    UploadMismatch = "UPLOAD_MISMATCH",
    /// The ticket has as many attachments as allowed.
    AttachmentLimit = "ATTACHMENT_LIMIT",
    /// The account already has as many webhook endpoints as allowed.
    WebhookEndpointLimit = "WEBHOOK_ENDPOINT_LIMIT",
    /// RotateWebhookEndpointSecret while as many retired secrets still sign as may.
    WebhookSecretRotationLimit = "WEBHOOK_SECRET_ROTATION_LIMIT",
    /// The account already has as many live groups as allowed.
    GroupLimit = "GROUP_LIMIT",
    /// The account already has as many live schedules as allowed.
    ScheduleLimit = "SCHEDULE_LIMIT",
    /// DeleteSchedule while a live SLA policy measures on the schedule.
    ScheduleInUse = "SCHEDULE_IN_USE",
    /// The account already has as many live SLA policies as allowed.
    SlaPolicyLimit = "SLA_POLICY_LIMIT",
    /// ComputeDueTime: the target is not reached within two years of its start.
    DueTimeBeyondHorizon = "DUE_TIME_BEYOND_HORIZON",
    /// DeleteGroup while tickets that are not solved or closed are assigned to the group.
    GroupHasOpenTickets = "GROUP_HAS_OPEN_TICKETS",
    /// RemoveGroupMember while the member is the assignee of a ticket of the group that is not
    /// solved or closed.
    GroupMemberHasOpenTickets = "GROUP_MEMBER_HAS_OPEN_TICKETS",
    /// AssignTicket or CreateTicket leaving a ticket with a group and an assignee who is not a
    /// member of it.
    AssigneeNotInGroup = "ASSIGNEE_NOT_IN_GROUP",
    /// The account already has as many custom fields as allowed.
    CustomFieldLimit = "CUSTOM_FIELD_LIMIT",
    /// The account already has as many shared views, or the user as many personal views, as
    /// allowed.
    ViewLimit = "VIEW_LIMIT",
    /// ResolveTicket while a custom field required to solve has no value on the ticket.
    CustomFieldsRequired = "CUSTOM_FIELDS_REQUIRED",
    /// An AttachmentService RPC on a deployment without object storage.
    AttachmentsNotConfigured = "ATTACHMENTS_NOT_CONFIGURED",
    /// The payment provider declined the card.
    CardDeclined = "CARD_DECLINED",
    /// The refund is larger than what is left to refund of the charge.
    RefundExceedsCharge = "REFUND_EXCEEDS_CHARGE",
    /// The charge is pending, failed or already fully refunded.
    ChargeNotRefundable = "CHARGE_NOT_REFUNDABLE",
    /// The charge is disputed (a chargeback): it cannot be refunded.
    ChargeDisputed = "CHARGE_DISPUTED",
    /// The charge was given up without the provider charging it.
    ChargeAbandoned = "CHARGE_ABANDONED",
    /// The payment provider refused a field of the request; `BadRequest` names it.
    PaymentRefused = "PAYMENT_REFUSED",
    /// The payment provider refused the request because of the state it holds.
    RefusedByProvider = "REFUSED_BY_PROVIDER",
    /// A billing RPC on a deployment without a payment provider.
    BillingNotConfigured = "BILLING_NOT_CONFIGURED",
    /// Re-driving a webhook event that was processed.
    WebhookEventNotDead = "WEBHOOK_EVENT_NOT_DEAD",
    /// Re-driving a notification that is neither dead nor skipped.
    NotificationNotRedrivable = "NOTIFICATION_NOT_REDRIVABLE",
    /// An admin demoting or deactivating themselves.
    SelfLockout = "SELF_LOCKOUT",
    /// CreateUser naming a deactivated user of the account who has no password: an admin
    /// reactivates them first.
    UserInactive = "USER_INACTIVE",
    /// Deleting a long-running operation that is not done.
    OperationNotDone = "OPERATION_NOT_DONE",
    /// A quota is used up.
    RateLimited = "RATE_LIMITED",
    /// The account already has as many imports running or waiting as allowed.
    ImportLimit = "IMPORT_LIMIT",
    /// The account or the instance already runs as many exports or event streams as allowed.
    StreamLimit = "STREAM_LIMIT",
    /// The request's headers are over the limit (Envoy's or the service's).
    HeadersTooLarge = "HEADERS_TOO_LARGE",
    /// The request body or message is over the limit (Envoy's or the service's).
    RequestTooLarge = "REQUEST_TOO_LARGE",
    /// (Envoy) The request did not arrive in time.
    RequestTimeout = "REQUEST_TIMEOUT",
    /// The request's deadline passed before the work finished.
    DeadlineExceeded = "DEADLINE_EXCEEDED",
    /// PostgreSQL cannot be reached.
    DatabaseUnavailable = "DATABASE_UNAVAILABLE",
    /// Every connection of the service's pool stayed busy.
    DatabaseBusy = "DATABASE_BUSY",
    /// Redis cannot be reached for something that needs it.
    RedisUnavailable = "REDIS_UNAVAILABLE",
    /// Object storage cannot be reached (attachments only).
    StorageUnavailable = "STORAGE_UNAVAILABLE",
    /// The payment provider cannot be reached, its breaker is open, or its answer was lost.
    PaymentProviderUnavailable = "PAYMENT_PROVIDER_UNAVAILABLE",
    /// This instance already has as many calls in flight to the provider as it allows.
    ProviderBusy = "PROVIDER_BUSY",
    /// The instance began shutting down and ended a running export; resume it elsewhere.
    InstanceDraining = "INSTANCE_DRAINING",
    /// A webhook delivery on a deployment without a signing secret.
    WebhooksNotConfigured = "WEBHOOKS_NOT_CONFIGURED",
    /// (Envoy) The service cannot be reached.
    BackendUnavailable = "BACKEND_UNAVAILABLE",
    /// (Envoy) Any other reply of Envoy's own.
    ProxyError = "PROXY_ERROR",
    /// A bug: logged in full, answered generically.
    Internal = "INTERNAL",
}

impl Reason {
    /// The reason whose wire text is `text`, for a status read back (a stored answer, a reply
    /// of Envoy's); `None` for text that is no reason of ours.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|reason| reason.as_str() == text)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `TicketNotFound` is sent as `TICKET_NOT_FOUND`: the name in code and on the wire agree.
    #[test]
    fn each_reason_is_sent_as_its_name_in_upper_snake_case() {
        for reason in Reason::ALL {
            let mut expected = String::new();
            for (index, c) in format!("{reason:?}").chars().enumerate() {
                if c.is_ascii_uppercase() && index > 0 {
                    expected.push('_');
                }
                expected.push(c.to_ascii_uppercase());
            }
            assert_eq!(reason.as_str(), expected);
        }
    }

    #[test]
    fn every_reason_is_read_back_from_its_text_and_nothing_else_is() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(*reason));
        }
        assert_eq!(Reason::parse("ticket_not_found"), None);
        assert_eq!(Reason::parse(""), None);
    }
}
