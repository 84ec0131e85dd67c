//! The round-trip budget of docs/performance.md, counted on the wire: the service talks to
//! PostgreSQL and Redis through counting proxies ([`crate::support::proxy`]), and each test counts what
//! many calls of one RPC cost, after a warm-up call.

use std::time::Duration;

use secrecy::ExposeSecret;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;

use crate::support::proxy::{Protocol, TcpProxy, socket_address_of, url_through};
use crate::support::{
    TestApp, admin_database_url, assert_reason, keyed, redis_url, valid_create_request, with_token,
};

/// Round trips made by the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RoundTrips {
    redis: u64,
    postgres: u64,
}

struct CountedApp {
    app: TestApp,
    postgres: TcpProxy,
    redis: TcpProxy,
}

impl CountedApp {
    async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    async fn spawn_with(configure: impl FnOnce(&mut supportdesk::configuration::Settings)) -> Self {
        let postgres = TcpProxy::start_counting(
            socket_address_of(&admin_database_url()),
            Some(Protocol::Postgres),
        )
        .await;
        let redis =
            TcpProxy::start_counting(socket_address_of(&redis_url()), Some(Protocol::Redis)).await;
        let app = TestApp::spawn_with(|settings| {
            settings.database.url =
                url_through(settings.database.url.expose_secret(), postgres.address).into();
            settings.redis.url =
                url_through(settings.redis.url.expose_secret(), redis.address).into();
            // One connection: a statement is prepared once, by the warm-up, not once on each of
            // several connections while calls are counted.
            settings.database.pool_size = 1;
            // Nothing in the background while calls are counted.
            settings.server.health_probe_interval = Duration::from_secs(3600);
            settings.idempotency.sweep_interval = Duration::from_secs(3600);
            settings.billing_completer_interval = Duration::from_secs(3600);
            configure(settings);
        })
        .await;
        Self {
            app,
            postgres,
            redis,
        }
    }

    fn so_far(&self) -> RoundTrips {
        RoundTrips {
            redis: self.redis.round_trips(),
            postgres: self.postgres.round_trips(),
        }
    }

    /// What `calls` cost together.
    async fn cost_of(&self, calls: impl AsyncFnOnce()) -> RoundTrips {
        let before = self.so_far();
        calls().await;
        let after = self.so_far();
        RoundTrips {
            redis: after.redis - before.redis,
            postgres: after.postgres - before.postgres,
        }
    }
}

const CALLS: u64 = 50;

#[tokio::test]
async fn a_cached_get_ticket_costs_one_redis_round_trip_and_no_postgresql() {
    let counted = CountedApp::spawn().await;
    let ticket = counted.app.create_ticket("cached").await;
    counted.app.get_ticket(&ticket.id).await.expect("warm-up");

    let cost = counted
        .cost_of(async || {
            for _ in 0..CALLS {
                counted.app.get_ticket(&ticket.id).await.expect("a hit");
            }
        })
        .await;
    assert_eq!(
        cost,
        RoundTrips {
            redis: CALLS,
            postgres: 0
        }
    );
}

#[tokio::test]
async fn a_get_ticket_that_misses_adds_one_query_and_one_cache_fill() {
    let counted = CountedApp::spawn().await;
    let mut ids = Vec::new();
    for n in 0..CALLS {
        ids.push(counted.app.create_ticket(&format!("miss {n}")).await.id);
    }
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for id in &ids {
        let key = format!(
            "{}ticket:{}:{id}",
            counted.app.redis_prefix, counted.app.account_id
        );
        let removed: i64 = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(removed, 1, "the write cached the ticket");
    }

    let (warm_up, ids) = ids.split_first().unwrap();
    counted.app.get_ticket(warm_up).await.expect("a first miss");

    let cost = counted
        .cost_of(async || {
            for id in ids {
                counted.app.get_ticket(id).await.expect("a miss");
            }
        })
        .await;
    let calls = CALLS - 1;
    assert_eq!(
        cost,
        RoundTrips {
            redis: 2 * calls,
            postgres: calls
        }
    );
}

#[tokio::test]
async fn a_page_of_tickets_costs_one_query_and_a_count_when_the_list_is_longer_than_the_page_and_each_is_prepared_too_in_the_filter_language()
 {
    let counted = CountedApp::spawn().await;
    for n in 0..25 {
        counted.app.create_ticket(&format!("listed {n}")).await;
    }
    let list = async |page_size: i32| {
        counted
            .app
            .tickets
            .clone()
            .list_tickets(counted.app.as_admin(v1::ListTicketsRequest {
                page_size,
                ..Default::default()
            }))
            .await
            .expect("a page")
            .into_inner()
    };
    list(20).await;
    list(30).await;

    // The whole list in one page is its own total_size.
    let whole = counted
        .cost_of(async || {
            for _ in 0..CALLS {
                let page = list(30).await;
                assert_eq!((page.tickets.len(), page.total_size), (25, 25));
            }
        })
        .await;
    assert_eq!(
        whole,
        RoundTrips {
            redis: CALLS,
            postgres: CALLS
        }
    );
    // A page of a longer list: the page, then the capped count (kept prepared).
    let partial = counted
        .cost_of(async || {
            for _ in 0..CALLS {
                let page = list(20).await;
                assert_eq!((page.tickets.len(), page.total_size), (20, 25));
            }
        })
        .await;
    assert_eq!(
        partial,
        RoundTrips {
            redis: CALLS,
            postgres: 2 * CALLS
        }
    );
    // In the filter language, both are planned with their values on every call: each is
    // prepared, then run.
    let filtered = counted
        .cost_of(async || {
            for _ in 0..CALLS {
                let page = counted
                    .app
                    .tickets
                    .clone()
                    .list_tickets(counted.app.as_admin(v1::ListTicketsRequest {
                        page_size: 20,
                        filter: "priority = normal".to_owned(),
                        ..Default::default()
                    }))
                    .await
                    .expect("a filtered page")
                    .into_inner();
                assert_eq!((page.tickets.len(), page.total_size), (20, 25));
            }
        })
        .await;
    assert_eq!(
        filtered,
        RoundTrips {
            redis: CALLS,
            postgres: 4 * CALLS
        }
    );
}

/// PostgreSQL round trips of one CreateTicket with an idempotency key, for a requester seen for
/// the first time, in one transaction (docs/performance.md lists them). The acknowledgement to
/// the requester is written in the ticket's own statement: the outbox costs no round trip.
const CREATE_TICKET_POSTGRES: u64 = 8;

#[tokio::test]
async fn a_ticket_is_created_in_one_transaction_of_a_known_number_of_round_trips() {
    let counted = CountedApp::spawn().await;
    let create = async |n: u64| {
        let mut request = valid_create_request(&format!("created {n}"));
        if let Some(ticket) = request.ticket.as_mut() {
            ticket.requester_email = format!("requester-{n}-{}@example.com", uuid::Uuid::now_v7());
        }
        counted
            .app
            .tickets
            .clone()
            .create_ticket(keyed(counted.app.as_admin(request)))
            .await
            .expect("created")
    };
    // A warm-up of the same kind (keyed, a new requester), so that every statement is prepared.
    create(CALLS).await;

    let cost = counted
        .cost_of(async || {
            for n in 0..CALLS {
                create(n).await;
            }
        })
        .await;
    assert_eq!(
        cost,
        RoundTrips {
            redis: 2 * CALLS,
            postgres: CREATE_TICKET_POSTGRES * CALLS
        }
    );
}

#[tokio::test]
async fn a_forged_token_costs_one_redis_round_trip_and_no_postgresql() {
    let counted = CountedApp::spawn().await;
    let genuine = counted.app.admin.access_token.clone();
    let (signed, _) = genuine.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", "A".repeat(43));
    let cost = counted
        .cost_of(async || {
            for _ in 0..CALLS {
                let status = counted
                    .app
                    .users
                    .clone()
                    .get_current_user(with_token(&forged, v1::GetCurrentUserRequest {}))
                    .await
                    .expect_err("forged");
                assert_reason(&status, Reason::InvalidCredentials);
            }
        })
        .await;
    assert_eq!(
        cost,
        RoundTrips {
            redis: CALLS,
            postgres: 0
        },
        "each forged token: the signature checked in memory, the failure counted in Redis"
    );
}

#[tokio::test]
async fn api_key_guesses_cost_postgresql_only_until_the_guesser_is_over_its_quota() {
    let counted = CountedApp::spawn_with(|settings| {
        settings.rate_limits.auth_failure = supportdesk::configuration::RateQuota {
            count: 5,
            window: Duration::from_secs(3600),
        };
    })
    .await;
    let guess = |n: u64| -> tonic::Request<v1::GetCurrentUserRequest> {
        with_token(&format!("sd_live_{n:0>43}"), v1::GetCurrentUserRequest {})
    };
    // A warm-up, so that the key lookup's statement is prepared.
    counted
        .app
        .users
        .clone()
        .get_current_user(guess(0))
        .await
        .expect_err("a guess");
    let under_the_quota = counted
        .cost_of(async || {
            for n in 1..5 {
                let status = counted
                    .app
                    .users
                    .clone()
                    .get_current_user(guess(n))
                    .await
                    .expect_err("a guess");
                assert_reason(&status, Reason::InvalidCredentials);
            }
        })
        .await;
    assert_eq!(
        under_the_quota,
        RoundTrips {
            redis: 2 * 4,
            postgres: 4
        },
        "admission, the key's lookup, the failure counted"
    );
    let over_the_quota = counted
        .cost_of(async || {
            for n in 100..100 + CALLS {
                let status = counted
                    .app
                    .users
                    .clone()
                    .get_current_user(guess(n))
                    .await
                    .expect_err("a guess");
                assert_eq!(status.code(), tonic::Code::ResourceExhausted);
            }
        })
        .await;
    assert_eq!(
        over_the_quota,
        RoundTrips {
            redis: CALLS,
            postgres: 0
        },
        "refused in admission's one round trip, before PostgreSQL is asked"
    );
}

#[tokio::test]
async fn a_password_reset_request_costs_the_same_round_trips_whether_or_not_the_address_is_a_users()
{
    let counted = CountedApp::spawn().await;
    let app = &counted.app;
    let user = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let request = |email: &str| v1::RequestPasswordResetRequest {
        account: user.account_slug.clone(),
        email: email.to_owned(),
    };
    // The warm-up prepares the statement on the one connection.
    app.auth
        .clone()
        .request_password_reset(request("warm-up@example.com"))
        .await
        .expect("answered");

    let known = counted
        .cost_of(async || {
            app.auth
                .clone()
                .request_password_reset(request(&user.email))
                .await
                .expect("answered");
        })
        .await;
    let unknown = counted
        .cost_of(async || {
            app.auth
                .clone()
                .request_password_reset(request("nobody-at-all@example.com"))
                .await
                .expect("answered");
        })
        .await;
    assert_eq!(known, unknown, "the same work on both paths");
    assert_eq!(
        known,
        RoundTrips {
            redis: 3,
            postgres: 1
        }
    );
}

#[tokio::test]
async fn refusing_a_logged_out_sessions_token_costs_the_one_admission_round_trip() {
    let counted = CountedApp::spawn().await;
    let app = &counted.app;
    let user = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let current = async || {
        app.users
            .clone()
            .get_current_user(with_token(&user.access_token, v1::GetCurrentUserRequest {}))
            .await
    };
    current()
        .await
        .expect("warm-up: the user's state is in Redis");
    app.auth
        .clone()
        .logout(with_token(&user.access_token, v1::LogoutRequest {}))
        .await
        .expect("logged out");

    let cost = counted
        .cost_of(async || {
            let status = current().await.expect_err("the session has ended");
            assert_reason(&status, Reason::SessionRevoked);
        })
        .await;
    // Admission (the marker read in its MGET), and nothing else: an ended session is nobody
    // guessing, so nothing is counted against the client's auth-failure quota
    // (docs/rate-limits.md); no PostgreSQL.
    assert_eq!(
        cost,
        RoundTrips {
            redis: 1,
            postgres: 0
        }
    );
}

#[tokio::test]
async fn a_streamed_direct_upload_costs_its_three_phases_whatever_the_number_of_messages() {
    use crate::support::attachments::{direct_upload, png_bytes, streamed};
    let counted = CountedApp::spawn().await;
    let ticket = counted.app.create_ticket("files").await;
    let upload = async |seed: u8, piece: usize| {
        let bytes = png_bytes(seed);
        counted
            .app
            .attachments
            .clone()
            .upload_attachment(keyed(counted.app.as_admin(streamed(direct_upload(
                &ticket.id,
                "a.png",
                "image/png",
                &bytes,
                piece,
            )))))
            .await
            .expect("stored")
    };
    // A warm-up in one message, so that every statement is prepared.
    upload(99, 4096).await;

    const UPLOADS: u64 = 10;
    let cost = counted
        .cost_of(async || {
            for seed in 0..UPLOADS {
                // 2,014 bytes in pieces of 200: eleven messages each.
                upload(seed as u8, 200).await;
            }
        })
        .await;
    assert_eq!(
        cost,
        RoundTrips {
            redis: UPLOADS,
            postgres: 12 * UPLOADS
        }
    );
}

/// The events' retention sweep, with nothing past retention, opens its transaction, finds
/// nothing to lock and commits: the statement that deletes what it locked is not sent.
#[tokio::test]
async fn a_retention_sweep_with_nothing_to_delete_sends_only_its_lock() {
    const RETENTION: Duration = Duration::from_secs(30 * 86_400);
    let app = TestApp::spawn().await;
    app.create_ticket("an event within retention").await;
    // The sweep's own connection, through a proxy of its own: nothing else is counted.
    let postgres = TcpProxy::start_counting(
        socket_address_of(&admin_database_url()),
        Some(Protocol::Postgres),
    )
    .await;
    let mut database = app.settings.database.clone();
    database.url = url_through(database.url.expose_secret(), postgres.address).into();
    database.pool_size = 1;
    let pool = supportdesk::db::build_pool(&database, Duration::from_secs(5));
    // A warm-up: the connection is opened and the lock's statement prepared.
    supportdesk::service::events::sweep_past_retention(&pool, RETENTION)
        .await
        .expect("the sweep ran");

    let before = postgres.round_trips();
    let deleted = supportdesk::service::events::sweep_past_retention(&pool, RETENTION)
        .await
        .expect("the sweep ran");
    assert_eq!(deleted, 0);
    // BEGIN with the transaction's limits, the lock (kept prepared: one round trip), COMMIT.
    assert_eq!(postgres.round_trips() - before, 3);
}
