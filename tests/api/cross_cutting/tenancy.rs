//! Tenant isolation, RPC by RPC: every RPC of the API is called by the admin of another account
//! and by a customer of the same account who owns none of the resources, aimed at the account's
//! resources. Nothing may leak and nothing may change. The list of RPCs comes from the
//! descriptor set, so a new RPC fails this test until it is given a probe.

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use supportdesk::wire::proto::google::longrunning as lro;
use supportdesk::wire::proto::v1;
use tonic::{Code, Status};

use crate::support::{
    TEST_PASSWORD, TestApp, TestUser, every_rpc, keyed, valid_create_request, with_token,
};

/// What the attack is aimed at: resources of the target account.
struct Target {
    admin: TestUser,
    owner: TestUser,
    agent: TestUser,
    ticket: v1::Ticket,
    /// A ready attachment of the ticket.
    attachment: v1::Attachment,
    /// A paid charge of the owner.
    charge: v1::Charge,
    api_key_id: String,
    /// A dead webhook event about the charge, and the bytes the provider signed.
    webhook_event: (String, Vec<u8>),
    /// The dead acknowledgement of the ticket; its recipient (the owner) is suppressed.
    notification_id: String,
    /// A queued import of the account (the test app runs no operation workers), by name.
    operation: String,
    /// A webhook endpoint of the account, and the pending delivery of a test event to it.
    endpoint_id: String,
    delivery_id: String,
}

#[derive(diesel::QueryableByName)]
struct Snapshot {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    rows: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    table_name: String,
}

/// The tables that hold an account's rows: `accounts` itself and every table with an
/// `account_id` column, read from information_schema so that a table added by a migration is
/// in the snapshot the day it exists.
async fn tenant_tables(conn: &mut diesel_async::AsyncPgConnection) -> Vec<String> {
    let tables: Vec<TableName> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_name = 'account_id' ORDER BY table_name",
    )
    .load(conn)
    .await
    .expect("the tables with an account_id");
    let mut names: Vec<String> = tables.into_iter().map(|table| table.table_name).collect();
    names.insert(0, "accounts".to_owned());
    names
}

/// Every row of the target account, as text: equal snapshots mean nothing changed.
async fn snapshot(app: &TestApp) -> String {
    let mut conn = app.database.connect().await;
    let mut all = String::new();
    for table in tenant_tables(&mut conn).await {
        let column = if table == "accounts" {
            "id"
        } else {
            "account_id"
        };
        let rows: Vec<Snapshot> = diesel::sql_query(format!(
            "SELECT json_agg(t ORDER BY t::text)::text AS rows FROM {table} t WHERE {column} = $1"
        ))
        .bind::<SqlUuid, _>(app.account_id.as_uuid())
        .load(&mut conn)
        .await
        .expect("snapshot");
        all.push_str(&table);
        all.push_str(rows[0].rows.as_deref().unwrap_or("[]"));
    }
    all
}

#[tokio::test]
async fn the_snapshot_covers_every_table_that_holds_an_accounts_rows() {
    let app = TestApp::spawn().await;
    let mut conn = app.database.connect().await;
    let tables = tenant_tables(&mut conn).await;
    for expected in [
        "accounts",
        "api_keys",
        "charge_activities",
        "charge_disputes",
        "charges",
        "email_events",
        "email_suppressions",
        "notifications",
        "operations",
        "refunds",
        "ticket_activities",
        "ticket_comments",
        "tickets",
        "users",
        "webhook_events",
    ] {
        assert!(
            tables.iter().any(|table| table == expected),
            "{expected}: {tables:?}"
        );
    }
}

#[derive(diesel::QueryableByName)]
struct Payload {
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    payload: Vec<u8>,
}

fn assert_refused<T: std::fmt::Debug>(rpc: &str, result: Result<T, Status>, codes: &[Code]) {
    match result {
        Ok(answer) => panic!("{rpc} answered {answer:?}"),
        Err(status) => assert!(
            codes.contains(&status.code()),
            "{rpc}: {:?} {}",
            status.code(),
            status.message()
        ),
    }
}

/// An Operations client to `app`.
fn operations(
    app: &TestApp,
) -> lro::operations_client::OperationsClient<tonic::transport::Channel> {
    lro::operations_client::OperationsClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.address))
            .expect("a valid uri")
            .connect_lazy(),
    )
}

/// A NotificationService client to `app`.
async fn notifications(
    app: &TestApp,
) -> v1::notification_service_client::NotificationServiceClient<tonic::transport::Channel> {
    crate::support::notifications::client(app).await
}

/// A WebhookEndpointService client to `app`.
fn endpoints(
    app: &TestApp,
) -> v1::webhook_endpoint_service_client::WebhookEndpointServiceClient<tonic::transport::Channel> {
    v1::webhook_endpoint_service_client::WebhookEndpointServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.address))
            .unwrap()
            .connect_lazy(),
    )
}

const HIDDEN: &[Code] = &[Code::NotFound];
const DENIED: &[Code] = &[Code::PermissionDenied];
const HIDDEN_OR_DENIED: &[Code] = &[Code::NotFound, Code::PermissionDenied];

/// Calls `rpc` as `attacker` against `target` and checks that nothing of the target leaks.
async fn probe(app: &TestApp, rpc: &str, attacker: &TestUser, target: &Target) {
    let foreign = attacker.account_id != target.admin.account_id;
    let ticket_id = target.ticket.id.clone();
    let agent_id = target.agent.id.to_string();
    match rpc {
        "AccountService/CreateAccount" => {
            // Public: it creates a new account and touches no other.
            let created = app
                .accounts
                .clone()
                .create_account(v1::CreateAccountRequest {
                    name: "Another".to_owned(),
                    slug: format!("probe-{}", uuid::Uuid::now_v7().simple()),
                    admin_email: target.admin.email.clone(),
                    admin_password: TEST_PASSWORD.to_owned(),
                    admin_display_name: String::new(),
                })
                .await
                .expect("signing up is open")
                .into_inner();
            assert_ne!(
                created.account.unwrap().id,
                target.admin.account_id.to_string()
            );
        }
        "AttachmentService/CreateUpload" => {
            let bytes = crate::support::attachments::png_bytes(0);
            let result = app
                .attachments
                .clone()
                .create_upload(
                    attacker.request(crate::support::attachments::upload_request(
                        &ticket_id,
                        "probe.png",
                        "image/png",
                        &bytes,
                    )),
                )
                .await;
            assert_refused(rpc, result, HIDDEN);
        }
        "AttachmentService/UploadAttachment" => {
            let result = app
                .attachments
                .clone()
                .upload_attachment(attacker.request(crate::support::attachments::streamed(
                    crate::support::attachments::direct_upload(
                        &ticket_id,
                        "probe.txt",
                        "text/plain",
                        b"probe",
                        2,
                    ),
                )))
                .await;
            assert_refused(rpc, result, HIDDEN);
        }
        "AttachmentService/CompleteUpload" => {
            let result = app
                .attachments
                .clone()
                .complete_upload(attacker.request(v1::CompleteUploadRequest {
                    id: target.attachment.id.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN);
        }
        "AttachmentService/GetAttachment" => {
            let result = app
                .attachments
                .clone()
                .get_attachment(attacker.request(v1::GetAttachmentRequest {
                    id: target.attachment.id.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN);
        }
        "AttachmentService/ListAttachments" => {
            let result = app
                .attachments
                .clone()
                .list_attachments(attacker.request(v1::ListAttachmentsRequest {
                    ticket_id: ticket_id.clone(),
                    ..Default::default()
                }))
                .await;
            assert_refused(rpc, result, HIDDEN);
        }
        "AttachmentService/DeleteAttachment" => {
            let result = app
                .attachments
                .clone()
                .delete_attachment(attacker.request(v1::DeleteAttachmentRequest {
                    id: target.attachment.id.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN);
        }
        "AttachmentService/GetDownloadUrl" => {
            let result = app
                .attachments
                .clone()
                .get_download_url(attacker.request(v1::GetDownloadUrlRequest {
                    id: target.attachment.id.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN);
        }
        "AccountService/GetAccount" => {
            let account = app
                .accounts
                .clone()
                .get_account(attacker.request(v1::GetAccountRequest {}))
                .await
                .expect("the caller's own account")
                .into_inner();
            assert_eq!(account.id, attacker.account_id.to_string());
        }
        "ApiKeyService/CreateApiKey" => {
            let result = app
                .api_keys
                .clone()
                .create_api_key(keyed(attacker.request(v1::CreateApiKeyRequest {
                    api_key: Some(v1::ApiKey {
                        name: "probe".to_owned(),
                        roles: vec![v1::UserRole::Admin.into()],
                        ..Default::default()
                    }),
                })))
                .await;
            if foreign {
                // An admin elsewhere makes a key of their own account, never of the target's.
                let created = result
                    .expect("created in the attacker's account")
                    .into_inner();
                let listed = app
                    .api_keys
                    .clone()
                    .list_api_keys(target.admin.request(v1::ListApiKeysRequest::default()))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(
                    listed
                        .api_keys
                        .iter()
                        .all(|key| key.id != created.api_key.as_ref().unwrap().id)
                );
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        "ApiKeyService/ListApiKeys" => {
            let result = app
                .api_keys
                .clone()
                .list_api_keys(attacker.request(v1::ListApiKeysRequest::default()))
                .await;
            if foreign {
                let keys = result
                    .expect("the attacker's own keys")
                    .into_inner()
                    .api_keys;
                assert!(keys.iter().all(|key| key.id != target.api_key_id));
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        "ApiKeyService/RevokeApiKey" => {
            let result = app
                .api_keys
                .clone()
                .revoke_api_key(attacker.request(v1::RevokeApiKeyRequest {
                    id: target.api_key_id.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "AuthService/Login" => {
            // The attacker's own password does not open the target's account.
            let result = app
                .auth
                .clone()
                .login(v1::LoginRequest {
                    account: target.admin.account_slug.clone(),
                    email: attacker.email.clone(),
                    password: "not the target's password".to_owned(),
                })
                .await;
            assert_refused(rpc, result, &[Code::Unauthenticated]);
        }
        "AuthService/RequestPasswordReset" => {
            // An address that is no user of the target account: the same answer as for one
            // that is, and nothing of the target is written.
            app.auth
                .clone()
                .request_password_reset(v1::RequestPasswordResetRequest {
                    account: target.admin.account_slug.clone(),
                    email: format!("not-{}", attacker.email),
                })
                .await
                .expect("the same empty answer");
        }
        "AuthService/ResetPassword" => {
            let result = app
                .auth
                .clone()
                .reset_password(v1::ResetPasswordRequest {
                    account: target.admin.account_slug.clone(),
                    token: format!("guessed-{}", attacker.id),
                    new_password: "the attacker's choice".to_owned(),
                })
                .await;
            assert_refused(rpc, result, &[Code::Unauthenticated]);
        }
        "AuthService/RefreshToken" => {
            let tokens = app
                .auth
                .clone()
                .refresh_token(v1::RefreshTokenRequest {
                    refresh_token: attacker.refresh_token.clone(),
                })
                .await
                .expect("the attacker's own session")
                .into_inner()
                .tokens
                .unwrap();
            let me = app
                .users
                .clone()
                .get_current_user(with_token(
                    &tokens.access_token,
                    v1::GetCurrentUserRequest {},
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(me.id, attacker.id.to_string(), "still the attacker");
        }
        "AuthService/Logout" | "AuthService/LogoutAll" => {
            let session =
                crate::support::log_in(&app.auth, &attacker.account_slug, &attacker.email).await;
            if rpc.ends_with("LogoutAll") {
                app.auth
                    .clone()
                    .logout_all(session.request(v1::LogoutAllRequest {}))
                    .await
                    .expect("the attacker's own sessions");
            } else {
                app.auth
                    .clone()
                    .logout(session.request(v1::LogoutRequest {}))
                    .await
                    .expect("the attacker's own session");
            }
            // The target's sessions are checked once all probes have run.
        }
        "TicketService/CreateTicket" => {
            // Aimed at the target: assign it to the target's agent, or raise it for its owner.
            let mut request = valid_create_request("probe");
            let ticket = request.ticket.as_mut().unwrap();
            if foreign {
                ticket.assignee_id = agent_id;
            } else {
                ticket.requester_email = target.owner.email.clone();
            }
            let result = app
                .tickets
                .clone()
                .create_ticket(attacker.request(request))
                .await;
            assert_refused(rpc, result, &[Code::InvalidArgument]);
        }
        "BillingService/CreateCharge" => {
            let result = app
                .billing
                .clone()
                .create_charge(keyed(attacker.request(v1::CreateChargeRequest {
                    charge: Some(v1::Charge {
                        customer_id: target.owner.id.to_string(),
                        amount: Some(v1::Money {
                            amount_minor: 100,
                            currency_code: "USD".to_owned(),
                        }),
                        payment_method: "pm_card_visa".to_owned(),
                        ..Default::default()
                    }),
                })))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "DashboardService/GetRevenue" => {
            let result = app
                .dashboard
                .clone()
                .get_revenue(attacker.request(v1::GetRevenueRequest::default()))
                .await;
            match result {
                Ok(revenue) => assert_eq!(revenue.into_inner().currencies, []),
                Err(status) => assert_refused(rpc, Err::<(), _>(status), DENIED),
            }
        }
        "DashboardService/GetTicketStats" => {
            let result = app
                .dashboard
                .clone()
                .get_ticket_stats(attacker.request(v1::GetTicketStatsRequest::default()))
                .await;
            match result {
                Ok(stats) => {
                    let stats = stats.into_inner();
                    assert_eq!((stats.open, stats.daily), (vec![], vec![]));
                }
                Err(status) => assert_refused(rpc, Err::<(), _>(status), DENIED),
            }
        }
        "DashboardService/GetRecentActivity" => {
            let result = app
                .dashboard
                .clone()
                .get_recent_activity(attacker.request(v1::GetRecentActivityRequest {
                    page_size: 100,
                    ..Default::default()
                }))
                .await;
            match result {
                Ok(page) => assert!(page.into_inner().records.iter().all(|record| {
                    record.ticket_id != target.ticket.id && record.charge_id != target.charge.id
                })),
                Err(status) => assert_refused(rpc, Err::<(), _>(status), DENIED),
            }
        }
        "DashboardService/GetDashboard" => {
            let result = app
                .dashboard
                .clone()
                .get_dashboard(attacker.request(v1::GetDashboardRequest::default()))
                .await;
            match result {
                Ok(dashboard) => {
                    let dashboard = dashboard.into_inner();
                    let revenue = dashboard.revenue.unwrap().revenue.unwrap_or_default();
                    assert_eq!(revenue.currencies, []);
                    let stats = dashboard.ticket_stats.unwrap().ticket_stats.unwrap();
                    assert_eq!((stats.open, stats.daily), (vec![], vec![]));
                    let activity = dashboard.recent_activity.unwrap().recent_activity.unwrap();
                    assert!(activity.records.iter().all(|record| {
                        record.ticket_id != target.ticket.id && record.charge_id != target.charge.id
                    }));
                }
                Err(status) => assert_refused(rpc, Err::<(), _>(status), DENIED),
            }
        }
        "BillingService/GetCharge" => {
            let result = app
                .billing
                .clone()
                .get_charge(attacker.request(v1::GetChargeRequest {
                    id: target.charge.id.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN);
        }
        "BillingService/ListCharges" => {
            let charges = app
                .billing
                .clone()
                .list_charges(attacker.request(v1::ListChargesRequest {
                    page_size: 100,
                    ..Default::default()
                }))
                .await
                .expect("the attacker's own charges")
                .into_inner()
                .charges;
            assert!(charges.iter().all(|charge| charge.id != target.charge.id));
        }
        "BillingService/ListReconciliationFindings" => {
            let result = app
                .billing
                .clone()
                .list_reconciliation_findings(attacker.request(
                    v1::ListReconciliationFindingsRequest {
                        page_size: 100,
                        ..Default::default()
                    },
                ))
                .await;
            if foreign {
                let listed = result.expect("their own list").into_inner();
                assert!(
                    listed
                        .findings
                        .iter()
                        .all(|finding| finding.charge_id != target.charge.id),
                    "{rpc}: {listed:?}"
                );
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        "BillingService/RefundCharge" => {
            let result = app
                .billing
                .clone()
                .refund_charge(keyed(attacker.request(v1::RefundChargeRequest {
                    id: target.charge.id.clone(),
                    amount: None,
                })))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "TicketService/GetTicket" => {
            let result = app
                .tickets
                .clone()
                .get_ticket(attacker.request(v1::GetTicketRequest {
                    id: ticket_id,
                    ..Default::default()
                }))
                .await;
            assert_refused(rpc, result, HIDDEN);
        }
        "TicketService/ListTickets" => {
            let tickets = app
                .tickets
                .clone()
                .list_tickets(attacker.request(v1::ListTicketsRequest {
                    page_size: 100,
                    page_token: String::new(),
                    ..Default::default()
                }))
                .await
                .expect("the attacker's own tickets")
                .into_inner()
                .tickets;
            assert!(tickets.iter().all(|ticket| ticket.id != target.ticket.id));
        }
        "TicketService/ExportTickets" => {
            let mut stream = app
                .tickets
                .clone()
                .export_tickets(attacker.request(v1::ExportTicketsRequest::default()))
                .await
                .expect("the attacker's own export")
                .into_inner();
            while let Some(ticket) = stream.message().await.expect("the export streams") {
                assert_ne!(
                    ticket.id, target.ticket.id,
                    "{rpc} leaked the target's ticket"
                );
            }
        }
        "TicketService/SearchTickets" => {
            let results = app
                .tickets
                .clone()
                .search_tickets(attacker.request(v1::SearchTicketsRequest {
                    q: target.ticket.subject.clone(),
                    page_size: 100,
                    ..Default::default()
                }))
                .await
                .expect("the attacker's own search")
                .into_inner()
                .results;
            assert!(
                results
                    .iter()
                    .all(|result| result.ticket.as_ref().map(|ticket| &ticket.id)
                        != Some(&target.ticket.id)),
                "{rpc} found the target's ticket"
            );
        }
        "TicketService/ListTicketChanges" => {
            let result = app
                .tickets
                .clone()
                .list_ticket_changes(attacker.request(v1::ListTicketChangesRequest {
                    page_size: 100,
                    ..Default::default()
                }))
                .await;
            match result {
                Ok(response) => assert!(
                    response.into_inner().changes.iter().all(|change| change
                        .ticket
                        .as_ref()
                        .map(|ticket| &ticket.id)
                        != Some(&target.ticket.id)),
                    "{rpc} leaked the target's ticket"
                ),
                Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{rpc}"),
            }
        }
        "UserService/CreateUser" => {
            let result = app
                .users
                .clone()
                .create_user(attacker.request(v1::CreateUserRequest {
                    user: Some(v1::User {
                        email: target.agent.email.clone(),
                        role: v1::UserRole::Admin.into(),
                        ..Default::default()
                    }),
                    password: TEST_PASSWORD.to_owned(),
                }))
                .await;
            if foreign {
                let created = result
                    .expect("created in the attacker's account")
                    .into_inner();
                assert_eq!(created.account_id, attacker.account_id.to_string());
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        "UserService/GetUser" => {
            let result = app
                .users
                .clone()
                .get_user(attacker.request(v1::GetUserRequest { id: agent_id }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "UserService/ListUsers" => {
            let result = app
                .users
                .clone()
                .list_users(attacker.request(v1::ListUsersRequest {
                    page_size: 100,
                    page_token: String::new(),
                }))
                .await;
            if foreign {
                let users = result.expect("the attacker's own users").into_inner().users;
                assert!(
                    users
                        .iter()
                        .all(|user| user.account_id == attacker.account_id.to_string())
                );
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        "UserService/UpdateUser" => {
            let result = app
                .users
                .clone()
                .update_user(attacker.request(v1::UpdateUserRequest {
                    user: Some(v1::User {
                        id: agent_id,
                        role: v1::UserRole::Customer.into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["role".to_owned()],
                    }),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "UserService/GetCurrentUser" => {
            let me = app
                .users
                .clone()
                .get_current_user(attacker.request(v1::GetCurrentUserRequest {}))
                .await
                .expect("the attacker themselves")
                .into_inner();
            assert_eq!(me.id, attacker.id.to_string());
        }
        "TicketService/UpdateTicket" => {
            let result = app
                .tickets
                .clone()
                .update_ticket(attacker.request(v1::UpdateTicketRequest {
                    ticket: Some(v1::Ticket {
                        id: ticket_id,
                        subject: "hijacked".to_owned(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["subject".to_owned()],
                    }),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "TicketService/AssignTicket" => {
            let result = app
                .tickets
                .clone()
                .assign_ticket(attacker.request(v1::AssignTicketRequest {
                    id: ticket_id,
                    assignee_id: agent_id,
                    etag: String::new(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "TicketService/ResolveTicket" => {
            let result = app
                .tickets
                .clone()
                .resolve_ticket(attacker.request(v1::ResolveTicketRequest {
                    id: ticket_id,
                    etag: String::new(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "TicketService/ReopenTicket" => {
            let result = app
                .tickets
                .clone()
                .reopen_ticket(attacker.request(v1::ReopenTicketRequest {
                    id: ticket_id,
                    etag: String::new(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN);
        }
        "TicketService/CloseTicket" => {
            let result = app
                .tickets
                .clone()
                .close_ticket(attacker.request(v1::CloseTicketRequest {
                    id: ticket_id,
                    etag: String::new(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "TicketService/DeleteTicket" => {
            let result = app
                .tickets
                .clone()
                .delete_ticket(attacker.request(v1::DeleteTicketRequest {
                    id: ticket_id,
                    etag: String::new(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "TicketService/AddComment" => {
            let result = app
                .tickets
                .clone()
                .add_comment(attacker.request(v1::AddCommentRequest {
                    ticket_id,
                    comment: Some(v1::Comment {
                        body: "let me in".to_owned(),
                        public: true,
                        ..Default::default()
                    }),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN);
        }
        "TicketService/ListComments" => {
            let result = app
                .tickets
                .clone()
                .list_comments(attacker.request(v1::ListCommentsRequest {
                    ticket_id,
                    ..Default::default()
                }))
                .await;
            assert_refused(rpc, result, HIDDEN);
        }
        "TicketService/ListTicketActivity" => {
            let result = app
                .tickets
                .clone()
                .list_ticket_activity(attacker.request(v1::ListTicketActivityRequest {
                    ticket_id,
                    ..Default::default()
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "TicketService/ImportTickets" => {
            // An admin imports into their own account only; a customer may not import.
            let result = app
                .tickets
                .clone()
                .import_tickets(attacker.request(v1::ImportTicketsRequest {
                    format: v1::ImportFormat::Csv.into(),
                    content: format!(
                        "subject,description,requester_email\nProbe,probe,{}\n",
                        target.owner.email
                    ),
                }))
                .await;
            if foreign {
                let name = result
                    .expect("an admin imports into their own account")
                    .into_inner()
                    .name;
                let theirs = operations(app)
                    .get_operation(attacker.request(lro::GetOperationRequest { name }))
                    .await;
                assert!(theirs.is_ok(), "the import is the attacker's own");
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        "google.longrunning.Operations/GetOperation" => {
            let result = operations(app)
                .get_operation(attacker.request(lro::GetOperationRequest {
                    name: target.operation.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "google.longrunning.Operations/WaitOperation" => {
            let result = operations(app)
                .wait_operation(attacker.request(lro::WaitOperationRequest {
                    name: target.operation.clone(),
                    timeout: None,
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "google.longrunning.Operations/CancelOperation" => {
            let result = operations(app)
                .cancel_operation(attacker.request(lro::CancelOperationRequest {
                    name: target.operation.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "google.longrunning.Operations/DeleteOperation" => {
            let result = operations(app)
                .delete_operation(attacker.request(lro::DeleteOperationRequest {
                    name: target.operation.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "google.longrunning.Operations/ListOperations" => {
            let result = operations(app)
                .list_operations(attacker.request(lro::ListOperationsRequest::default()))
                .await;
            if foreign {
                let listed = result.expect("their own list").into_inner();
                assert!(
                    listed
                        .operations
                        .iter()
                        .all(|operation| operation.name != target.operation),
                    "{rpc} listed the target's operation"
                );
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        "WebhookService/ReceivePaymentEvent" => {
            // Public, and answerable only with the endpoint's secret: the attacker replays the
            // target's event with a signature of their own making.
            let (_, body) = &target.webhook_event;
            let forged = crate::webhooks::receiving::signed(
                body,
                &["whsec_attacker_made_this_0123456789"],
                chrono::Utc::now().timestamp(),
            );
            let mut request = tonic::Request::new(v1::ReceivePaymentEventRequest {
                http_body: Some(supportdesk::wire::proto::google::api::HttpBody {
                    content_type: "application/json".to_owned(),
                    data: body.clone(),
                    extensions: Vec::new(),
                }),
            });
            request
                .metadata_mut()
                .insert("stripe-signature", forged.parse().expect("ascii"));
            let result = app.webhooks.clone().receive_payment_event(request).await;
            assert_refused(rpc, result, &[Code::InvalidArgument]);
        }
        "WebhookService/ListWebhookEvents" => {
            let result = app
                .webhooks
                .clone()
                .list_webhook_events(attacker.request(v1::ListWebhookEventsRequest {
                    state: v1::WebhookEventState::Dead.into(),
                    ..Default::default()
                }))
                .await;
            if foreign {
                let listed = result.expect("their own list").into_inner();
                assert!(listed.events.is_empty(), "{rpc}: {listed:?}");
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        "WebhookService/GetWebhookEvent" => {
            let result = app
                .webhooks
                .clone()
                .get_webhook_event(attacker.request(v1::GetWebhookEventRequest {
                    id: target.webhook_event.0.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "WebhookService/RedriveWebhookEvent" => {
            let result = app
                .webhooks
                .clone()
                .redrive_webhook_event(attacker.request(v1::RedriveWebhookEventRequest {
                    id: target.webhook_event.0.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "NotificationService/ListNotifications" => {
            let result = notifications(app)
                .await
                .list_notifications(attacker.request(v1::ListNotificationsRequest {
                    state: v1::NotificationState::Dead.into(),
                    ..Default::default()
                }))
                .await;
            if foreign {
                let listed = result.expect("their own list").into_inner();
                assert!(listed.notifications.is_empty(), "{rpc}: {listed:?}");
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        "NotificationService/GetNotification" => {
            let result = notifications(app)
                .await
                .get_notification(attacker.request(v1::GetNotificationRequest {
                    id: target.notification_id.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "NotificationService/RedriveNotification" => {
            let result = notifications(app)
                .await
                .redrive_notification(attacker.request(v1::RedriveNotificationRequest {
                    id: target.notification_id.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "NotificationService/GetNotificationSettings" => {
            // Self-scoped: the caller's own settings, whoever they are.
            let settings = notifications(app)
                .await
                .get_notification_settings(attacker.request(v1::GetNotificationSettingsRequest {}))
                .await
                .expect("the caller's own settings")
                .into_inner();
            assert!(settings.comment_notifications);
        }
        "NotificationService/UpdateNotificationSettings" => {
            // Self-scoped: it can only ever change the caller's own row (set here to the value it
            // has, so the target account's snapshot holds).
            let settings = notifications(app)
                .await
                .update_notification_settings(attacker.request(
                    v1::UpdateNotificationSettingsRequest {
                        notification_settings: Some(v1::NotificationSettings {
                            comment_notifications: true,
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["comment_notifications".to_owned()],
                        }),
                    },
                ))
                .await
                .expect("the caller's own settings")
                .into_inner();
            assert!(settings.comment_notifications);
            let owner = notifications(app)
                .await
                .get_notification_settings(
                    target.owner.request(v1::GetNotificationSettingsRequest {}),
                )
                .await
                .unwrap()
                .into_inner();
            assert!(!owner.comment_notifications, "the owner's choice stands");
        }
        "NotificationService/ListSuppressions" => {
            let result = notifications(app)
                .await
                .list_suppressions(attacker.request(v1::ListSuppressionsRequest::default()))
                .await;
            if foreign {
                let listed = result.expect("their own list").into_inner();
                assert!(listed.suppressions.is_empty(), "{rpc}: {listed:?}");
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        "NotificationService/DeleteSuppression" => {
            let result = notifications(app)
                .await
                .delete_suppression(attacker.request(v1::DeleteSuppressionRequest {
                    address: target.owner.email.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "NotificationService/ReceiveEmailEvent" => {
            // Public, and answerable only with the endpoint's secret: a complaint about the
            // target's notification, signed with a secret of the attacker's making.
            let body = crate::support::notifications::resend_event(
                "email.complained",
                &target.notification_id,
            );
            let result = notifications(app)
                .await
                .receive_email_event(crate::support::notifications::signed_delivery(
                    body,
                    "msg_attacker",
                    "whsec_b3RoZXJfc2VjcmV0X29mXzI0X2J5dGVz",
                ))
                .await;
            assert_refused(rpc, result, &[Code::InvalidArgument]);
        }
        "WebhookEndpointService/CreateWebhookEndpoint" => {
            let result = endpoints(app)
                .create_webhook_endpoint(keyed(attacker.request(
                    v1::CreateWebhookEndpointRequest {
                        webhook_endpoint: Some(v1::WebhookEndpoint {
                            url: "https://attacker.example.com/hook".to_owned(),
                            ..Default::default()
                        }),
                    },
                )))
                .await;
            if foreign {
                // Registered in the attacker's own account: the target's events never reach it
                // (outbound_webhooks::an_endpoint_is_sent_only_..._never_another_accounts_events).
                let created = result
                    .expect("created in the attacker's account")
                    .into_inner();
                let listed = endpoints(app)
                    .list_webhook_endpoints(
                        target
                            .admin
                            .request(v1::ListWebhookEndpointsRequest::default()),
                    )
                    .await
                    .unwrap()
                    .into_inner();
                assert!(listed.webhook_endpoints.iter().all(|endpoint| {
                    endpoint.id != created.webhook_endpoint.as_ref().unwrap().id
                }));
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        "WebhookEndpointService/ListWebhookEndpoints" => {
            let result = endpoints(app)
                .list_webhook_endpoints(
                    attacker.request(v1::ListWebhookEndpointsRequest::default()),
                )
                .await;
            if foreign {
                let listed = result.expect("the attacker's own endpoints").into_inner();
                assert!(
                    listed
                        .webhook_endpoints
                        .iter()
                        .all(|endpoint| endpoint.id != target.endpoint_id)
                );
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        "WebhookEndpointService/GetWebhookEndpoint" => {
            let result = endpoints(app)
                .get_webhook_endpoint(attacker.request(v1::GetWebhookEndpointRequest {
                    id: target.endpoint_id.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "WebhookEndpointService/UpdateWebhookEndpoint" => {
            let result = endpoints(app)
                .update_webhook_endpoint(attacker.request(v1::UpdateWebhookEndpointRequest {
                    webhook_endpoint: Some(v1::WebhookEndpoint {
                        id: target.endpoint_id.clone(),
                        url: "https://attacker.example.com/stolen".to_owned(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["url".to_owned()],
                    }),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "WebhookEndpointService/DeleteWebhookEndpoint" => {
            let result = endpoints(app)
                .delete_webhook_endpoint(attacker.request(v1::DeleteWebhookEndpointRequest {
                    id: target.endpoint_id.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "WebhookEndpointService/RotateWebhookEndpointSecret" => {
            let result = endpoints(app)
                .rotate_webhook_endpoint_secret(keyed(attacker.request(
                    v1::RotateWebhookEndpointSecretRequest {
                        id: target.endpoint_id.clone(),
                    },
                )))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "WebhookEndpointService/SendTestWebhookEvent" => {
            let result = endpoints(app)
                .send_test_webhook_event(attacker.request(v1::SendTestWebhookEventRequest {
                    id: target.endpoint_id.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "WebhookEndpointService/ListWebhookDeliveries" => {
            let result = endpoints(app)
                .list_webhook_deliveries(attacker.request(v1::ListWebhookDeliveriesRequest {
                    endpoint_id: target.endpoint_id.clone(),
                    ..Default::default()
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "WebhookEndpointService/RedriveWebhookDelivery" => {
            let result = endpoints(app)
                .redrive_webhook_delivery(attacker.request(v1::RedriveWebhookDeliveryRequest {
                    endpoint_id: target.endpoint_id.clone(),
                    id: target.delivery_id.clone(),
                }))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "WebhookEndpointService/RedriveFailedWebhookDeliveries" => {
            let result = endpoints(app)
                .redrive_failed_webhook_deliveries(attacker.request(
                    v1::RedriveFailedWebhookDeliveriesRequest {
                        endpoint_id: target.endpoint_id.clone(),
                        since: Some(prost_types::Timestamp::default()),
                    },
                ))
                .await;
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
        "EventService/WatchEvents" => {
            // The attacker's stream carries the attacker's account's events only: the target's
            // changes made meanwhile never appear on it.
            let result = v1::event_service_client::EventServiceClient::new(
                tonic::transport::Channel::from_shared(format!("http://{}", app.address))
                    .unwrap()
                    .connect_lazy(),
            )
            .watch_events(attacker.request(v1::WatchEventsRequest {
                cursor: "0.0".to_owned(),
                ..Default::default()
            }))
            .await;
            if foreign {
                let mut stream = result.expect("the attacker's own stream").into_inner();
                let target_account = target.admin.account_id.to_string();
                // Everything of the attacker's account since the beginning, then a heartbeat
                // or the end of the patience: none of it the target's.
                while let Ok(Ok(Some(message))) =
                    tokio::time::timeout(std::time::Duration::from_millis(500), stream.message())
                        .await
                {
                    let Some(event) = message.event else { break };
                    assert_ne!(event.account_id, target_account, "{rpc}: {event:?}");
                }
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
        other => {
            panic!("{other} has no tenancy probe: add one to tests/api/cross_cutting/tenancy.rs")
        }
    }
}

#[tokio::test]
async fn no_rpc_lets_another_account_or_a_non_owning_customer_see_or_change_anything() {
    let app = TestApp::spawn().await;
    let owner = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let mut request = valid_create_request("owned by the customer");
    request.ticket.as_mut().unwrap().requester_email = owner.email.clone();
    let ticket = app
        .tickets
        .clone()
        .create_ticket(app.as_admin(request))
        .await
        .unwrap()
        .into_inner();
    let charge = app
        .billing
        .clone()
        .create_charge(keyed(app.as_admin(v1::CreateChargeRequest {
            charge: Some(v1::Charge {
                customer_id: owner.id.to_string(),
                amount: Some(v1::Money {
                    amount_minor: 2_500,
                    currency_code: "USD".to_owned(),
                }),
                payment_method: "pm_card_visa".to_owned(),
                ..Default::default()
            }),
        })))
        .await
        .expect("the target's charge")
        .into_inner();
    let api_key_id = app
        .api_keys
        .clone()
        .create_api_key(keyed(app.as_admin(v1::CreateApiKeyRequest {
            api_key: Some(v1::ApiKey {
                name: "target key".to_owned(),
                roles: vec![v1::UserRole::Agent.into()],
                ..Default::default()
            }),
        })))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap()
        .id;
    let webhook_event = {
        let id = crate::webhooks::admin::deliver_about(&app, &charge.id).await;
        crate::webhooks::admin::make_dead(&app, &id).await;
        let mut conn = app.database.connect().await;
        let payload: Vec<Payload> =
            diesel::sql_query("SELECT payload FROM webhook_events WHERE id = $1")
                .bind::<Text, _>(&id)
                .load(&mut conn)
                .await
                .expect("the stored payload");
        (id, payload[0].payload.clone())
    };
    // The owner turned comment notices off, the acknowledgement died and its address is
    // suppressed: the target account has a row in every notification table.
    let notification_id = crate::support::notifications::acknowledgement_of(&app, &ticket.id).await;
    crate::support::notifications::make_ended(&app, &notification_id, "dead").await;
    crate::support::notifications::suppress(&app, &owner.email).await;
    notifications(&app)
        .await
        .update_notification_settings(owner.request(v1::UpdateNotificationSettingsRequest {
            notification_settings: Some(v1::NotificationSettings {
                comment_notifications: false,
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["comment_notifications".to_owned()],
            }),
        }))
        .await
        .expect("the owner's own settings");
    let bytes = crate::support::attachments::png_bytes(9);
    let attachment = crate::support::attachments::uploaded(
        &app,
        &app.admin,
        crate::support::attachments::upload_request(&ticket.id, "target.png", "image/png", &bytes),
        bytes,
    )
    .await;
    let operation = app
        .tickets
        .clone()
        .import_tickets(app.as_admin(v1::ImportTicketsRequest {
            format: v1::ImportFormat::Csv.into(),
            content:
                "subject,description,requester_email\nTarget,target,a@example.com\n".to_owned(),
        }))
        .await
        .expect("the target's import")
        .into_inner()
        .name;
    let endpoint_id = endpoints(&app)
        .create_webhook_endpoint(keyed(app.as_admin(v1::CreateWebhookEndpointRequest {
            webhook_endpoint: Some(v1::WebhookEndpoint {
                url: "https://target.example.com/hook".to_owned(),
                ..Default::default()
            }),
        })))
        .await
        .expect("the target's endpoint")
        .into_inner()
        .webhook_endpoint
        .unwrap()
        .id;
    let delivery_id = endpoints(&app)
        .send_test_webhook_event(app.as_admin(v1::SendTestWebhookEventRequest {
            id: endpoint_id.clone(),
        }))
        .await
        .expect("the target's test delivery")
        .into_inner()
        .id;
    let target = Target {
        endpoint_id,
        delivery_id,
        operation,
        notification_id,
        attachment,
        webhook_event,
        charge,
        admin: app.admin.clone(),
        agent: app.add_user(&app.admin, v1::UserRole::Agent).await,
        owner,
        ticket,
        api_key_id,
    };
    let other_admin = app.sign_up_another_account().await;
    let other_customer = app.add_user(&app.admin, v1::UserRole::Customer).await;

    let mut rpcs: Vec<String> = every_rpc()
        .into_iter()
        .map(|(service, method)| format!("{service}/{method}"))
        .collect();
    // LogoutAll ends every session of its caller at once, access tokens included: each
    // attacker's last probe.
    rpcs.sort_by_key(|rpc| rpc.ends_with("/LogoutAll"));
    assert!(rpcs.len() >= 26, "the descriptor lists the API: {rpcs:?}");
    for attacker in [&other_admin, &other_customer] {
        for rpc in &rpcs {
            let before = snapshot(&app).await;
            probe(&app, rpc, attacker, &target).await;
            assert_eq!(
                snapshot(&app).await,
                before,
                "{rpc} called by {} changed the target account",
                attacker.email
            );
        }
    }
    app.auth
        .clone()
        .refresh_token(v1::RefreshTokenRequest {
            refresh_token: target.owner.refresh_token.clone(),
        })
        .await
        .expect("no logout of another ended the target's session");
}
