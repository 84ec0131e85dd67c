//! AccountService and UserService: signing up, roles, and what admins, agents and customers may
//! do with the people of their account.

use diesel_async::RunQueryDsl;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::{
    TEST_PASSWORD, TestApp, assert_reason, commit_once_waiting, count_of, details, log_in,
    release_once_waiting, violated_fields,
};

#[tokio::test]
async fn signing_up_creates_an_account_whose_admin_can_log_in() {
    let app = TestApp::spawn().await;
    let account = app
        .accounts
        .clone()
        .get_account(app.as_admin(v1::GetAccountRequest {}))
        .await
        .expect("the caller's account")
        .into_inner();
    assert_eq!(account.id, app.account_id.to_string());
    assert_eq!(account.slug, app.admin.account_slug);

    let me = app
        .users
        .clone()
        .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
        .await
        .expect("the caller")
        .into_inner();
    assert_eq!(me.role(), v1::UserRole::Admin);
    assert_eq!(me.email, app.admin.email);
    assert!(me.active);
}

#[tokio::test]
async fn a_taken_slug_is_already_exists_and_bad_sign_ups_name_every_field() {
    let app = TestApp::spawn().await;
    let status = app
        .accounts
        .clone()
        .create_account(v1::CreateAccountRequest {
            name: "Copycat".to_owned(),
            slug: app.admin.account_slug.clone(),
            admin_email: "someone@example.com".to_owned(),
            admin_password: TEST_PASSWORD.to_owned(),
            admin_display_name: String::new(),
        })
        .await
        .expect_err("taken");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_reason(&status, Reason::AccountSlugTaken);

    let status = app
        .accounts
        .clone()
        .create_account(v1::CreateAccountRequest {
            name: String::new(),
            slug: "Not A Slug".to_owned(),
            admin_email: "nope".to_owned(),
            admin_password: "short".to_owned(),
            admin_display_name: String::new(),
        })
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["name", "slug", "admin_email", "admin_password"]
    );
}

#[tokio::test]
async fn only_admins_add_users_and_a_taken_email_is_already_exists() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let status = app
        .user("new@example.com")
        .role(v1::UserRole::Agent)
        .by(&agent)
        .try_create()
        .await
        .expect_err("agents cannot add users");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_reason(&status, Reason::RoleRequired);

    let status = app
        .user(&agent.email.to_uppercase())
        .role(v1::UserRole::Agent)
        .try_create()
        .await
        .expect_err("taken, whatever the case");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_reason(&status, Reason::UserEmailTaken);

    let status = app
        .users
        .clone()
        .create_user(app.as_admin(v1::CreateUserRequest {
            user: Some(v1::User::default()),
            password: "short".to_owned(),
        }))
        .await
        .expect_err("invalid");
    assert_eq!(
        violated_fields(&status),
        ["user.email", "user.role", "password"]
    );
}

#[tokio::test]
async fn a_requester_known_from_a_ticket_can_be_invited_to_log_in() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("from an email").await;
    let invited = app
        .user(&ticket.requester_email)
        .display_name("Jane")
        .try_create()
        .await
        .expect("invited");
    assert_eq!(
        invited.id, ticket.requester_id,
        "the same person, now with a login"
    );
    let jane = log_in(&app.auth, &app.admin.account_slug, &ticket.requester_email).await;
    let listed = app
        .tickets
        .clone()
        .list_tickets(jane.request(v1::ListTicketsRequest::default()))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(
        listed.tickets.len(),
        1,
        "she sees the ticket she raised by email"
    );
}

/// A deactivation is an admin's decision: CreateUser does not quietly claim a deactivated
/// person who has no password (which left them inactive and mailed an invitation whose link then
/// refused them). It answers FAILED_PRECONDITION, writes nothing, and once an admin reactivates
/// them the same call invites them.
#[tokio::test]
async fn inviting_a_deactivated_requester_is_refused_until_an_admin_reactivates_her() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("from an email").await;
    app.users
        .clone()
        .update_user(app.as_admin(update(
            &ticket.requester_id,
            v1::User {
                active: false,
                ..Default::default()
            },
            &["active"],
        )))
        .await
        .expect("deactivated");
    let invite = || {
        app.user(&ticket.requester_email)
            .display_name("Jane")
            .without_password()
            .try_create()
    };
    let invitations = format!(
        "SELECT count(*) AS count FROM password_tokens WHERE user_id = '{}'",
        ticket.requester_id
    );

    let status = invite()
        .await
        .expect_err("a deactivated person is not invited behind the admin's back");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_reason(&status, Reason::UserInactive);
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM users WHERE id = '{}' AND NOT active \
                 AND password_hash IS NULL",
                ticket.requester_id
            ),
        )
        .await,
        1,
        "the user is left as the deactivation left her"
    );
    assert_eq!(count_of(&app.database, &invitations).await, 0);

    app.users
        .clone()
        .update_user(app.as_admin(update(
            &ticket.requester_id,
            v1::User {
                active: true,
                ..Default::default()
            },
            &["active"],
        )))
        .await
        .expect("reactivated");
    let invited = invite().await.expect("invited once active");
    assert_eq!(invited.id, ticket.requester_id);
    assert!(invited.active);
    assert_eq!(count_of(&app.database, &invitations).await, 1);
}

#[tokio::test]
async fn two_admins_inviting_one_requester_at_once_give_her_one_login_and_tell_the_other_it_is_taken()
 {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("from an email").await;
    let mut lock = app.database.connect().await;
    diesel::sql_query("BEGIN").execute(&mut lock).await.unwrap();
    diesel::sql_query("SELECT id FROM users WHERE email = $1 FOR UPDATE")
        .bind::<diesel::sql_types::Text, _>(&ticket.requester_email)
        .execute(&mut lock)
        .await
        .unwrap();
    let names = [
        "Jane as the first admin knows her",
        "Jane as the second does",
    ];
    let invitations: Vec<_> = names
        .iter()
        .map(|name| {
            let mut users = app.users.clone();
            let request = app.as_admin(
                app.user(&ticket.requester_email)
                    .display_name(name)
                    .request(),
            );
            tokio::spawn(async move { users.create_user(request).await })
        })
        .collect();
    release_once_waiting(&app.database, lock, 2, "both invitations wait for her row").await;

    let mut invited = Vec::new();
    for invitation in invitations {
        match invitation.await.unwrap() {
            Ok(user) => invited.push(user.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                assert_reason(&status, Reason::UserEmailTaken);
            }
        }
    }
    let [jane] = invited.as_slice() else {
        panic!("one invitation gives her a login, not {invited:?}");
    };
    assert_eq!(jane.id, ticket.requester_id);
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM users WHERE id = '{}' \
                 AND display_name = '{}' AND password_hash IS NOT NULL",
                jane.id, jane.display_name
            ),
        )
        .await,
        1,
        "PostgreSQL has the invitation that answered OK"
    );
}

#[tokio::test]
async fn an_invitation_sent_while_a_ticket_adds_the_same_requester_waits_for_it_and_gives_her_the_login()
 {
    let app = TestApp::spawn().await;
    let email = format!("jane-{}@example.com", uuid::Uuid::now_v7().simple());
    // A ticket's transaction has added her as a customer and not committed yet...
    let mut ticket = app.database.connect().await;
    diesel::sql_query("BEGIN")
        .execute(&mut ticket)
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Added {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    let requester: Added = diesel::sql_query(
        "INSERT INTO users (id, account_id, email, display_name, role) \
         VALUES (gen_random_uuid(), $1, $2, '', 'customer') RETURNING id",
    )
    .bind::<diesel::sql_types::Uuid, _>(app.account_id.as_uuid())
    .bind::<diesel::sql_types::Text, _>(&email)
    .get_result(&mut ticket)
    .await
    .unwrap();
    // ...when an admin invites her, with a key.
    let mut request = app.as_admin(app.user(&email).display_name("Jane").request());
    request
        .metadata_mut()
        .insert("idempotency-key", "invite-jane".parse().unwrap());
    let invitation = tokio::spawn({
        let mut users = app.users.clone();
        async move { users.create_user(request).await }
    });
    commit_once_waiting(
        &app.database,
        ticket,
        1,
        "the invitation waits for the ticket's",
    )
    .await;

    let invited = invitation
        .await
        .unwrap()
        .expect("she is given the login, as when the ticket came first")
        .into_inner();
    assert_eq!(invited.id, requester.id.to_string());
    assert_eq!(invited.display_name, "Jane");
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM users WHERE email = '{email}' \
                 AND display_name = 'Jane' AND password_hash IS NOT NULL"
            ),
        )
        .await,
        1
    );
    log_in(&app.auth, &app.admin.account_slug, &email).await;
}

#[tokio::test]
async fn agents_read_users_customers_only_themselves() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;

    let listed = app
        .users
        .clone()
        .list_users(agent.request(v1::ListUsersRequest {
            page_size: 2,
            page_token: String::new(),
        }))
        .await
        .expect("agents list users")
        .into_inner();
    assert_eq!(listed.users.len(), 2);
    let rest = app
        .users
        .clone()
        .list_users(agent.request(v1::ListUsersRequest {
            page_size: 2,
            page_token: listed.next_page_token,
        }))
        .await
        .expect("next page")
        .into_inner();
    assert_eq!(rest.users.len(), 1);
    assert!(rest.next_page_token.is_empty());

    let status = app
        .users
        .clone()
        .list_users(customer.request(v1::ListUsersRequest::default()))
        .await
        .expect_err("customers do not list users");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = app
        .users
        .clone()
        .get_user(customer.request(v1::GetUserRequest {
            id: agent.id.to_string(),
        }))
        .await
        .expect_err("nor read others");
    assert_eq!(status.code(), Code::PermissionDenied);
    let own = app
        .users
        .clone()
        .get_user(customer.request(v1::GetUserRequest {
            id: customer.id.to_string(),
        }))
        .await
        .expect("but may read themselves")
        .into_inner();
    assert_eq!(own.role(), v1::UserRole::Customer);
}

fn update(id: &str, user: v1::User, paths: &[&str]) -> v1::UpdateUserRequest {
    v1::UpdateUserRequest {
        user: Some(v1::User {
            id: id.to_owned(),
            ..user
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
        }),
    }
}

#[tokio::test]
async fn a_demotion_applies_to_the_very_next_call() {
    let app = TestApp::spawn().await;
    let second_admin = app.add_user(&app.admin, v1::UserRole::Admin).await;
    app.users
        .clone()
        .list_users(second_admin.request(v1::ListUsersRequest::default()))
        .await
        .expect("an admin lists users");

    let updated = app
        .users
        .clone()
        .update_user(app.as_admin(update(
            &second_admin.id.to_string(),
            v1::User {
                role: v1::UserRole::Customer.into(),
                display_name: "ignored: not in the mask".to_owned(),
                ..Default::default()
            },
            &["role"],
        )))
        .await
        .expect("demoted")
        .into_inner();
    assert_eq!(updated.role(), v1::UserRole::Customer);
    assert_eq!(updated.display_name, "");

    let status = app
        .users
        .clone()
        .list_users(second_admin.request(v1::ListUsersRequest::default()))
        .await
        .expect_err("the same token no longer carries admin rights");
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let app = TestApp::spawn().await;
    let second_admin = app.add_user(&app.admin, v1::UserRole::Admin).await;
    let admins = async || {
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM users WHERE account_id = '{}' \
                 AND role = 'admin' AND active",
                app.account_id.as_uuid()
            ),
        )
        .await
    };
    assert_eq!(admins().await, 2);

    // Both demotions pass admission while their targets' rows are held, then race.
    let mut lock = app.database.connect().await;
    diesel::sql_query("BEGIN").execute(&mut lock).await.unwrap();
    diesel::sql_query("SELECT id FROM users WHERE id IN ($1, $2) FOR UPDATE")
        .bind::<diesel::sql_types::Uuid, _>(app.admin.id.as_uuid())
        .bind::<diesel::sql_types::Uuid, _>(second_admin.id.as_uuid())
        .execute(&mut lock)
        .await
        .unwrap();
    let demote = |caller: &crate::support::TestUser, target: &crate::support::TestUser| {
        let mut users = app.users.clone();
        let request = caller.request(update(
            &target.id.to_string(),
            v1::User {
                role: v1::UserRole::Agent.into(),
                ..Default::default()
            },
            &["role"],
        ));
        tokio::spawn(async move { users.update_user(request).await })
    };
    let first = demote(&app.admin, &second_admin);
    let second = demote(&second_admin, &app.admin);
    release_once_waiting(&app.database, lock, 2, "both demotions wait").await;

    let outcomes = [first.await.unwrap(), second.await.unwrap()];
    let refused: Vec<&tonic::Status> = outcomes
        .iter()
        .filter_map(|outcome| outcome.as_ref().err())
        .collect();
    let [refused] = refused.as_slice() else {
        panic!("exactly one demotion is refused: {outcomes:?}");
    };
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_reason(refused, Reason::RoleRequired);
    assert_eq!(admins().await, 1, "the account keeps an admin");
}

#[tokio::test]
async fn a_deactivated_user_is_locked_out_at_once_tokens_and_sessions_alike() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    app.users
        .clone()
        .update_user(app.as_admin(update(
            &agent.id.to_string(),
            v1::User {
                active: false,
                ..Default::default()
            },
            &["active"],
        )))
        .await
        .expect("deactivated");

    let status = app
        .tickets
        .clone()
        .list_tickets(agent.request(v1::ListTicketsRequest::default()))
        .await
        .expect_err("the access token stops working");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_reason(&status, Reason::UserDeactivated);

    let status = app
        .auth
        .clone()
        .refresh_token(v1::RefreshTokenRequest {
            refresh_token: agent.refresh_token.clone(),
        })
        .await
        .expect_err("the session is over");
    assert_eq!(status.code(), Code::Unauthenticated);

    let status = app
        .auth
        .clone()
        .login(v1::LoginRequest {
            account: agent.account_slug.clone(),
            email: agent.email.clone(),
            password: TEST_PASSWORD.to_owned(),
        })
        .await
        .expect_err("and logging in again fails");
    assert_reason(&status, Reason::InvalidCredentials);
}

#[tokio::test]
async fn admins_cannot_lock_themselves_out() {
    let app = TestApp::spawn().await;
    let status = app
        .users
        .clone()
        .update_user(app.as_admin(update(
            &app.admin.id.to_string(),
            v1::User {
                role: v1::UserRole::Agent.into(),
                ..Default::default()
            },
            &["role"],
        )))
        .await
        .expect_err("self-demotion");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_reason(&status, Reason::SelfLockout);
    let failure = details(&status);
    let violation = &failure
        .precondition_failure()
        .expect("PreconditionFailure")
        .violations[0];
    assert_eq!(violation.subject, format!("users/{}", app.admin.id));
}

#[tokio::test]
async fn an_update_mask_naming_an_unknown_or_immutable_field_is_refused() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let status = app
        .users
        .clone()
        .update_user(app.as_admin(update(
            &agent.id.to_string(),
            v1::User::default(),
            &["display_name", "email"],
        )))
        .await
        .expect_err("email cannot change");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["update_mask.paths[1]"]);

    let status = app
        .users
        .clone()
        .update_user(app.as_admin(update(&agent.id.to_string(), v1::User::default(), &[])))
        .await
        .expect_err("an empty mask changes nothing");
    assert_eq!(violated_fields(&status), ["update_mask"]);
}

/// An address an earlier release accepted and the mail library refuses, put straight into the
/// row: its user stays readable (from PostgreSQL and from the ticket cache) and can log in, and
/// the same kind of address is refused as new input, with the field named.
#[tokio::test]
async fn an_address_stored_under_the_looser_rule_stays_readable_and_logs_in_but_is_refused_as_new_input()
 {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let stored = "jane..doe@example.com";
    let mut conn = app.database.connect().await;
    let updated = diesel::sql_query("UPDATE users SET email = $1 WHERE id = $2")
        .bind::<diesel::sql_types::Text, _>(stored)
        .bind::<diesel::sql_types::Uuid, _>(customer.id.as_uuid())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(updated, 1);

    let read = app
        .users
        .clone()
        .get_user(app.as_admin(v1::GetUserRequest {
            id: customer.id.to_string(),
        }))
        .await
        .expect("the row reads")
        .into_inner();
    assert_eq!(read.email, stored);

    let logged_in = log_in(&app.auth, &app.admin.account_slug, stored).await;
    assert_eq!(logged_in.id, customer.id);
    let ticket = app
        .ticket("raised by an old address")
        .requester("")
        .by(&logged_in)
        .try_create()
        .await
        .expect("the customer raises a ticket");
    assert_eq!(ticket.requester_email, stored);
    for _ in ["from PostgreSQL", "from the cache"] {
        let again = app
            .tickets
            .clone()
            .get_ticket(app.as_admin(v1::GetTicketRequest {
                id: ticket.id.clone(),
                read_mask: None,
            }))
            .await
            .expect("the ticket reads")
            .into_inner();
        assert_eq!(again.requester_email, stored);
    }

    let status = app
        .user("john..doe@example.com")
        .role(v1::UserRole::Agent)
        .try_create()
        .await
        .expect_err("undeliverable");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["user.email"]);
    let status = app
        .ticket("for an old address")
        .requester(stored)
        .try_create()
        .await
        .expect_err("not as a new requester either");
    assert_eq!(violated_fields(&status), ["ticket.requester_email"]);
}
