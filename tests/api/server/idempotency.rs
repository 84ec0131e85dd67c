//! Exactly-once mutations: retries with an idempotency key replay the first outcome, never run
//! twice, across instances, and recover from requests that died midway.

use std::time::{Duration, Instant};

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::support::{
    PATIENCE, TestApp, TestDatabase, assert_reason, backends_waiting_on_locks, count_of, details,
    error_reason, lock_account, second_instance, valid_create_request, violated_fields, wait_until,
    with_key,
};

fn replayed<T>(response: &tonic::Response<T>) -> bool {
    response
        .metadata()
        .get("idempotent-replayed")
        .is_some_and(|value| value == "true")
}

/// Sends a create with `key` until it is no longer ABORTED (in use), as a client following
/// RetryInfo would.
async fn create_until_settled(
    mut client: TicketServiceClient<Channel>,
    request: impl Fn() -> Request<v1::CreateTicketRequest>,
) -> Result<tonic::Response<v1::Ticket>, Status> {
    for _ in 0..200 {
        match client.create_ticket(request()).await {
            Err(status) if error_reason(&status) == Some(Reason::IdempotencyKeyInUse) => {
                let delay = details(&status)
                    .retry_info()
                    .and_then(|info| info.retry_delay)
                    .expect("RetryInfo says when");
                tokio::time::sleep(delay.min(Duration::from_millis(50))).await;
            }
            settled => return settled,
        }
    }
    panic!("the key stayed in use");
}

#[tokio::test]
async fn fifty_concurrent_identical_requests_with_one_key_create_one_ticket_and_agree() {
    let app = TestApp::spawn().await;
    let attempts: Vec<_> = (0..50)
        .map(|_| {
            let client = app.tickets.clone();
            let admin = app.admin.clone();
            tokio::spawn(async move {
                create_until_settled(client, || {
                    with_key(
                        admin.request(valid_create_request("exactly once")),
                        "key-50",
                    )
                })
                .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut replays = 0;
    for attempt in attempts {
        let response = attempt
            .await
            .unwrap()
            .expect("every retry settles on the answer");
        replays += usize::from(replayed(&response));
        ids.push(response.into_inner().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "all 50 answers name the same ticket");
    assert_eq!(replays, 49, "one ran, 49 were replays");
    assert_eq!(
        count_of(&app.database, "SELECT count(*) AS count FROM tickets").await,
        1
    );
}

#[tokio::test]
async fn two_instances_sharing_the_database_run_a_keyed_request_once() {
    let app = TestApp::spawn().await;
    let (channel, server) = second_instance(&app.settings).await;
    let other = TicketServiceClient::new(channel);
    let attempts: Vec<_> = (0..20)
        .map(|attempt| {
            let client = if attempt % 2 == 0 {
                app.tickets.clone()
            } else {
                other.clone()
            };
            let admin = app.admin.clone();
            tokio::spawn(async move {
                create_until_settled(client, || {
                    with_key(
                        admin.request(valid_create_request("two instances")),
                        "key-2",
                    )
                })
                .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for attempt in attempts {
        ids.push(attempt.await.unwrap().expect("settled").into_inner().id);
    }
    server.abort();
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        count_of(&app.database, "SELECT count(*) AS count FROM tickets").await,
        1
    );
}

#[tokio::test]
async fn the_same_key_with_another_request_is_refused_and_runs_nothing() {
    let app = TestApp::spawn().await;
    app.tickets
        .clone()
        .create_ticket(with_key(
            app.as_admin(valid_create_request("first")),
            "reused",
        ))
        .await
        .expect("created");
    let status = app
        .tickets
        .clone()
        .create_ticket(with_key(
            app.as_admin(valid_create_request("second")),
            "reused",
        ))
        .await
        .expect_err("another request");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_reason(&status, Reason::IdempotencyKeyReused);
    assert_eq!(violated_fields(&status), ["idempotency-key"]);
    assert_eq!(
        count_of(&app.database, "SELECT count(*) AS count FROM tickets").await,
        1
    );
}

#[tokio::test]
async fn a_retry_while_the_first_runs_is_aborted_at_once_and_then_replayed() {
    let app = TestApp::spawn().await;
    let mut lock = lock_account(&app).await;
    let first = tokio::spawn({
        let mut client = app.tickets.clone();
        let request = with_key(app.as_admin(valid_create_request("slow")), "in-flight");
        async move { client.create_ticket(request).await }
    });
    wait_until(
        "the first create waiting on the row lock, its key claimed",
        PATIENCE,
        || async { backends_waiting_on_locks(&app.database).await == 1 },
    )
    .await;

    let started = Instant::now();
    let status = app
        .tickets
        .clone()
        .create_ticket(with_key(
            app.as_admin(valid_create_request("slow")),
            "in-flight",
        ))
        .await
        .expect_err("the first still runs");
    assert_eq!(status.code(), Code::Aborted);
    assert_reason(&status, Reason::IdempotencyKeyInUse);
    assert!(details(&status).retry_info().is_some());
    // Not held until the lock goes (never, here) nor until the 10 s request deadline: the
    // retry waits IDEMPOTENCY_WAIT_MS (100 ms) and is answered.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no long block: {:?}",
        started.elapsed()
    );

    diesel::sql_query("ROLLBACK")
        .execute(&mut lock)
        .await
        .unwrap();
    let created = first
        .await
        .unwrap()
        .expect("the first completes")
        .into_inner();
    let again = app
        .tickets
        .clone()
        .create_ticket(with_key(
            app.as_admin(valid_create_request("slow")),
            "in-flight",
        ))
        .await
        .expect("replayed");
    assert!(replayed(&again));
    assert_eq!(again.into_inner(), created);
}

#[tokio::test]
async fn a_request_that_died_midway_leaves_its_key_free_for_the_retry() {
    let app = TestApp::spawn_with(|settings| {
        settings.server.request_timeout = Duration::from_millis(700);
    })
    .await;
    let mut lock = lock_account(&app).await;
    let status = app
        .tickets
        .clone()
        .create_ticket(with_key(
            app.as_admin(valid_create_request("dies")),
            "crash",
        ))
        .await
        .expect_err("cut short by its deadline while holding the key");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    diesel::sql_query("ROLLBACK")
        .execute(&mut lock)
        .await
        .unwrap();

    // A process that crashed holding a key: its transaction, and the key with it, is gone.
    let mut crashed = app.database.connect().await;
    diesel::sql_query("BEGIN")
        .execute(&mut crashed)
        .await
        .unwrap();
    diesel::sql_query(
        "INSERT INTO idempotency_keys (id, caller, rpc, key, request_hash, status_code, expires_at) \
         VALUES (gen_random_uuid(), $1, '/supportdesk.v1.TicketService/CreateTicket', 'crash2', \
                 '\\x00', -1, now() + interval '1 day')",
    )
    .bind::<Text, _>(format!("user:{}", app.admin.id))
    .execute(&mut crashed)
    .await
    .unwrap();
    drop(crashed);

    for key in ["crash", "crash2"] {
        let retried = app
            .tickets
            .clone()
            .create_ticket(with_key(app.as_admin(valid_create_request("dies")), key))
            .await
            .expect("the retry runs");
        assert!(!replayed(&retried), "{key}: nothing had been stored");
    }
    assert_eq!(
        count_of(&app.database, "SELECT count(*) AS count FROM tickets").await,
        2
    );
}

#[tokio::test]
async fn a_final_error_is_stored_and_replayed_even_after_things_change() {
    let app = TestApp::spawn_with(|settings| settings.tickets.max_open_per_requester = 1).await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let first = app.create_ticket("the one open ticket").await;
    let status = app
        .tickets
        .clone()
        .create_ticket(with_key(
            app.as_admin(valid_create_request("one too many")),
            "limit",
        ))
        .await
        .expect_err("over the limit");
    assert_reason(&status, Reason::OpenTicketLimit);

    app.tickets
        .clone()
        .assign_ticket(app.as_admin(v1::AssignTicketRequest {
            id: first.id.clone(),
            assignee_id: agent.id.to_string(),
            etag: String::new(),
            group_id: None,
        }))
        .await
        .unwrap();
    app.tickets
        .clone()
        .resolve_ticket(app.as_admin(v1::ResolveTicketRequest {
            id: first.id,
            etag: String::new(),
        }))
        .await
        .unwrap();

    let replay = app
        .tickets
        .clone()
        .create_ticket(with_key(
            app.as_admin(valid_create_request("one too many")),
            "limit",
        ))
        .await
        .expect_err("the stored outcome, not a new attempt");
    assert_reason(&replay, Reason::OpenTicketLimit);
    assert_eq!(
        replay.metadata().get("idempotent-replayed").unwrap(),
        "true"
    );
    assert_eq!(replay.message(), status.message());
}

#[tokio::test]
async fn requests_refused_before_running_store_nothing_and_bad_keys_are_named() {
    let app = TestApp::spawn().await;
    let mut invalid = valid_create_request("");
    invalid.ticket.as_mut().unwrap().subject = String::new();
    let status = app
        .tickets
        .clone()
        .create_ticket(with_key(app.as_admin(invalid), "validated"))
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    app.tickets
        .clone()
        .create_ticket(with_key(
            app.as_admin(valid_create_request("valid now")),
            "validated",
        ))
        .await
        .expect("the key was never used: no REUSED");

    let mut request = app.as_admin(valid_create_request("bad key"));
    request
        .metadata_mut()
        .insert("idempotency-key", "k".repeat(256).parse().unwrap());
    let status = app
        .tickets
        .clone()
        .create_ticket(request)
        .await
        .expect_err("too long");
    assert_eq!(violated_fields(&status), ["idempotency-key"]);
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM idempotency_keys"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn keys_expire_and_the_sweeper_deletes_them() {
    let app = TestApp::spawn_with(|settings| {
        settings.idempotency.retention = Duration::from_secs(1);
        settings.idempotency.sweep_interval = Duration::from_millis(300);
    })
    .await;
    let first = app
        .tickets
        .clone()
        .create_ticket(with_key(
            app.as_admin(valid_create_request("expiring")),
            "short-lived",
        ))
        .await
        .unwrap()
        .into_inner();
    let started = Instant::now();
    while count_of(
        &app.database,
        "SELECT count(*) AS count FROM idempotency_keys",
    )
    .await
        > 0
    {
        assert!(started.elapsed() < Duration::from_secs(30), "never swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = app
        .tickets
        .clone()
        .create_ticket(with_key(
            app.as_admin(valid_create_request("expiring")),
            "short-lived",
        ))
        .await
        .unwrap();
    assert!(!replayed(&second));
    assert_ne!(
        second.into_inner().id,
        first.id,
        "an expired key is a new request"
    );
}

#[tokio::test]
async fn create_api_key_requires_a_key_and_its_replay_never_holds_the_secret() {
    let app = TestApp::spawn().await;
    let request = || v1::CreateApiKeyRequest {
        api_key: Some(v1::ApiKey {
            name: "sync".to_owned(),
            roles: vec![v1::UserRole::Agent.into()],
            ..Default::default()
        }),
    };
    let status = app
        .api_keys
        .clone()
        .create_api_key(app.as_admin(request()))
        .await
        .expect_err("required");
    assert_eq!(violated_fields(&status), ["idempotency-key"]);

    let created = app
        .api_keys
        .clone()
        .create_api_key(with_key(app.as_admin(request()), "api-key"))
        .await
        .unwrap()
        .into_inner();
    assert!(created.secret.starts_with("sd_live_"));
    let replay = app
        .api_keys
        .clone()
        .create_api_key(with_key(app.as_admin(request()), "api-key"))
        .await
        .unwrap();
    assert!(replayed(&replay));
    let replay = replay.into_inner();
    assert_eq!(replay.api_key, created.api_key, "the same key");
    assert!(replay.secret.is_empty(), "the secret is never stored");

    let mut conn = app.database.connect().await;
    #[derive(diesel::QueryableByName)]
    struct Body {
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        response_body: Vec<u8>,
    }
    let bodies: Vec<Body> = diesel::sql_query(
        "SELECT response_body FROM idempotency_keys WHERE response_body IS NOT NULL",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let secret = created.secret.as_bytes();
    assert!(bodies.iter().all(|body| {
        !body
            .response_body
            .windows(secret.len())
            .any(|window| window == secret)
    }));
}

#[derive(diesel::QueryableByName)]
struct StoredFingerprint {
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    request_hash: Vec<u8>,
    #[diesel(sql_type = Text)]
    caller: String,
}

/// The fingerprint and scope stored for `key` of `rpc`.
async fn stored_under(database: &TestDatabase, rpc: &str, key: &str) -> StoredFingerprint {
    let mut conn = database.connect().await;
    let mut rows: Vec<StoredFingerprint> = diesel::sql_query(
        "SELECT request_hash, caller FROM idempotency_keys WHERE rpc = $1 AND key = $2",
    )
    .bind::<Text, _>(rpc)
    .bind::<Text, _>(key)
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "one row for {rpc} {key}");
    rows.remove(0)
}

/// Every unkeyed hash a reader of the table could test guesses against.
fn unkeyed_hashes(encoded: &[u8]) -> Vec<Vec<u8>> {
    use sha2::Digest;
    vec![
        sha2::Sha256::digest(encoded).to_vec(),
        sha2::Sha512::digest(encoded).to_vec(),
        sha2::Sha224::digest(encoded).to_vec(),
        sha2::Sha384::digest(encoded).to_vec(),
    ]
}

fn keyed_fingerprint(encoded: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        crate::support::TEST_FINGERPRINT_KEY.as_bytes(),
    );
    ring::hmac::sign(&key, encoded).as_ref().to_vec()
}

#[tokio::test]
async fn a_stored_fingerprint_is_keyed_and_leaves_passwords_out() {
    use prost::Message;
    let app = TestApp::spawn().await;
    let slug = format!("fp-{}", uuid::Uuid::now_v7().simple());
    let account = v1::CreateAccountRequest {
        name: "Fingerprinted".to_owned(),
        slug: slug.clone(),
        admin_email: format!("admin@{slug}.example.com"),
        admin_password: "a password worth guessing".to_owned(),
        admin_display_name: "Admin".to_owned(),
    };
    app.accounts
        .clone()
        .create_account(with_key(Request::new(account.clone()), "fp-account"))
        .await
        .expect("signed up");
    let user = v1::CreateUserRequest {
        user: Some(v1::User {
            email: "fingerprinted@example.com".to_owned(),
            role: v1::UserRole::Agent.into(),
            ..Default::default()
        }),
        password: "another password worth guessing".to_owned(),
    };
    app.users
        .clone()
        .create_user(with_key(app.as_admin(user.clone()), "fp-user"))
        .await
        .expect("added");

    let cases = [
        (
            "/supportdesk.v1.AccountService/CreateAccount",
            "fp-account",
            account.encode_to_vec(),
            v1::CreateAccountRequest {
                admin_password: String::new(),
                ..account.clone()
            }
            .encode_to_vec(),
        ),
        (
            "/supportdesk.v1.UserService/CreateUser",
            "fp-user",
            user.encode_to_vec(),
            v1::CreateUserRequest {
                password: String::new(),
                ..user.clone()
            }
            .encode_to_vec(),
        ),
    ];
    for (rpc, key, whole, without_password) in cases {
        let stored = stored_under(&app.database, rpc, key).await.request_hash;
        for unkeyed in unkeyed_hashes(&whole)
            .into_iter()
            .chain(unkeyed_hashes(&without_password))
        {
            assert_ne!(stored, unkeyed, "{rpc}: an unkeyed hash of the request");
        }
        assert_ne!(
            stored,
            keyed_fingerprint(&whole),
            "{rpc}: the password is part of the fingerprint"
        );
        assert_eq!(
            stored,
            keyed_fingerprint(&without_password),
            "{rpc}: the HMAC of the request without its password"
        );
    }

    // Without the password in the fingerprint, a retry that differs only in it replays.
    let retried = app
        .users
        .clone()
        .create_user(with_key(
            app.as_admin(v1::CreateUserRequest {
                password: "a third password entirely".to_owned(),
                ..user
            }),
            "fp-user",
        ))
        .await
        .expect("replayed");
    assert!(replayed(&retried));
}

fn sign_up_from(address: &str, slug: &str, key: &str) -> Request<v1::CreateAccountRequest> {
    let mut request = with_key(
        Request::new(v1::CreateAccountRequest {
            name: "Scoped".to_owned(),
            slug: slug.to_owned(),
            admin_email: format!("admin@{slug}.example.com"),
            admin_password: crate::support::TEST_PASSWORD.to_owned(),
            admin_display_name: "Admin".to_owned(),
        }),
        key,
    );
    // The test client is on loopback, a trusted proxy: its x-forwarded-for is believed.
    request
        .metadata_mut()
        .insert("x-forwarded-for", address.parse().unwrap());
    request
}

#[tokio::test]
async fn anonymous_keys_are_scoped_to_the_client_address_so_strangers_learn_nothing() {
    let app = TestApp::spawn().await;
    let key = "a-key-two-strangers-chose";
    let first_slug = format!("first-{}", uuid::Uuid::now_v7().simple());
    app.accounts
        .clone()
        .create_account(sign_up_from("203.0.113.1", &first_slug, key))
        .await
        .expect("the first client signs up");

    // A stranger elsewhere with the same key and another body: a request of their own.
    let stranger = app
        .accounts
        .clone()
        .create_account(sign_up_from(
            "198.51.100.2",
            &format!("stranger-{}", uuid::Uuid::now_v7().simple()),
            key,
        ))
        .await
        .expect("not IDEMPOTENCY_KEY_REUSED: nothing is learnt about the first client");
    assert!(!replayed(&stranger));
    // The same body as the first client's is not replayed to a stranger either: it runs.
    let status = app
        .accounts
        .clone()
        .create_account(sign_up_from("198.51.100.3", &first_slug, key))
        .await
        .expect_err("runs, and finds the slug taken");
    assert_reason(&status, Reason::AccountSlugTaken);

    // The first client is still protected against its own mistakes.
    let status = app
        .accounts
        .clone()
        .create_account(sign_up_from("203.0.113.1", "something-else", key))
        .await
        .expect_err("the same client, another body");
    assert_reason(&status, Reason::IdempotencyKeyReused);
    let replay = app
        .accounts
        .clone()
        .create_account(sign_up_from("203.0.113.1", &first_slug, key))
        .await
        .expect("the same client's retry");
    assert!(replayed(&replay));

    // Three scopes hold the key (the first client's and two strangers'), none naming an
    // address in clear.
    let mut conn = app.database.connect().await;
    let scopes: Vec<StoredFingerprint> = diesel::sql_query(
        "SELECT DISTINCT request_hash, caller FROM idempotency_keys WHERE key = $1",
    )
    .bind::<Text, _>(key)
    .load(&mut conn)
    .await
    .unwrap();
    let callers: std::collections::BTreeSet<&str> =
        scopes.iter().map(|row| row.caller.as_str()).collect();
    assert_eq!(callers.len(), 3, "{callers:?}");
    for caller in callers {
        assert!(caller.starts_with("anonymous:"), "{caller}");
        for address in ["203.0.113.1", "198.51.100.2", "198.51.100.3"] {
            assert!(!caller.contains(address), "{caller}");
        }
    }
}

#[tokio::test]
async fn a_lock_held_past_a_keyed_transactions_lock_wait_is_idempotency_key_in_use_not_internal() {
    // Any statement of such a transaction, not only the key's claim: the faults-together test
    // saw a charge's record phase time out on a row its own retry held, answered INTERNAL.
    let database = TestDatabase::create().await;
    let mut holder = database.connect().await;
    let mut waiter = database.connect().await;
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut holder,
        "BEGIN; SELECT pg_advisory_xact_lock(4545)",
    )
    .await
    .expect("the holder takes the lock");
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut waiter,
        "BEGIN; SELECT set_config('lock_timeout', '100', true)",
    )
    .await
    .expect("the waiter's transaction with its lock wait");
    let error = diesel::sql_query("SELECT pg_advisory_xact_lock(4545)")
        .execute(&mut waiter)
        .await
        .expect_err("the lock is not granted within the wait");
    let status = Status::from(supportdesk::errors::AppError::from(error));
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_reason(&status, Reason::IdempotencyKeyInUse);
}

/// An instance whose clock lags two hours (libfaketime) takes a keyed request: its key is kept
/// the whole retention (24 h) after PostgreSQL's `now()`, the clock the sweep deletes by. Kept
/// by the instance's clock, it would be swept two hours early, and a client's retry within the
/// promised day would run the request again.
#[tokio::test]
async fn a_key_taken_by_an_instance_whose_clock_lags_is_kept_its_whole_retention() {
    let database = TestDatabase::create().await;
    let running = crate::support::binary::Running::start_with_clock(&database, &[], Some("-2h"));
    let channel = running.channel().await;
    running.wait_for_health("Serving").await;
    let admin = crate::support::binary::sign_up_through(&channel).await;

    TicketServiceClient::new(channel)
        .create_ticket(with_key(
            admin.request(valid_create_request("kept a day")),
            "lagging-clock",
        ))
        .await
        .expect("created");

    assert_eq!(
        count_of(
            &database,
            "SELECT count(*) AS count FROM idempotency_keys WHERE key = 'lagging-clock' \
             AND expires_at > now() + interval '23 hours 59 minutes' \
             AND expires_at <= now() + interval '24 hours'",
        )
        .await,
        1,
        "one key, expiring 24 hours from now by PostgreSQL's clock"
    );
}
