//! WatchEvents (docs/webhooks.md, "Watching events over gRPC"): the account's events as a gRPC
//! stream, resumable from a cursor without gaps or repeats, held back by a reader that stops.

use std::time::Duration;

use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::event_service_client::EventServiceClient;
use tonic::Streaming;
use tonic::transport::Channel;

use supportdesk::errors::Reason;

use crate::support::{
    PATIENCE, TestApp, assert_reason, backends_waiting_on_locks, busy_backends, keyed, wait_until,
    with_token,
};

/// A client whose HTTP/2 windows are the protocol's default 64 KiB (hyper's client asks for
/// megabytes), so that a reader that stops holds the service back after that much.
fn events(app: &TestApp) -> EventServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", app.address))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect_lazy();
    EventServiceClient::new(channel)
}

async fn watch(
    app: &TestApp,
    request: v1::WatchEventsRequest,
) -> Streaming<v1::WatchEventsResponse> {
    events(app)
        .watch_events(app.as_admin(request))
        .await
        .expect("the stream starts")
        .into_inner()
}

/// The next `count` events of `stream` (heartbeats skipped), with the cursor after each.
async fn next_events(
    stream: &mut Streaming<v1::WatchEventsResponse>,
    count: usize,
) -> Vec<(v1::Event, String)> {
    let mut received = Vec::new();
    while received.len() < count {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("an event within the patience")
            .expect("the stream goes on")
            .expect("the stream is open");
        if let Some(event) = message.event {
            received.push((event, message.cursor));
        }
    }
    received
}

fn ticket_id(event: &v1::Event) -> String {
    match &event.data {
        Some(v1::event::Data::Ticket(ticket)) => ticket.id.clone(),
        other => panic!("not a ticket event: {other:?}"),
    }
}

#[tokio::test]
async fn a_stream_resumed_from_its_last_cursor_misses_nothing_and_repeats_nothing() {
    let app = TestApp::spawn_with(|settings| {
        settings.outbound_webhooks.watch_max_duration = Duration::from_secs(300);
    })
    .await;
    let mut stream = watch(&app, v1::WatchEventsRequest::default()).await;
    let mut created = Vec::new();
    for subject in ["one", "two", "three"] {
        created.push(app.create_ticket(subject).await.id);
    }
    let first = next_events(&mut stream, 3).await;
    assert_eq!(
        first
            .iter()
            .map(|(event, _)| ticket_id(event))
            .collect::<Vec<_>>(),
        created
    );
    assert!(
        first
            .iter()
            .all(|(event, _)| event.r#type == "ticket.created")
    );
    drop(stream);

    // Missed while disconnected.
    for subject in ["four", "five"] {
        created.push(app.create_ticket(subject).await.id);
    }
    let last_cursor = first.last().unwrap().1.clone();
    let mut resumed = watch(
        &app,
        v1::WatchEventsRequest {
            cursor: last_cursor,
            ..Default::default()
        },
    )
    .await;
    let missed = next_events(&mut resumed, 2).await;
    assert_eq!(
        missed
            .iter()
            .map(|(event, _)| ticket_id(event))
            .collect::<Vec<_>>(),
        created[3..]
    );

    // From an event id: everything after it.
    let mut after_first = watch(
        &app,
        v1::WatchEventsRequest {
            after_event_id: first[0].0.id.clone(),
            ..Default::default()
        },
    )
    .await;
    let after = next_events(&mut after_first, 4).await;
    assert_eq!(
        after
            .iter()
            .map(|(event, _)| ticket_id(event))
            .collect::<Vec<_>>(),
        created[1..]
    );
}

/// An event this build cannot read (a newer type during a mixed deploy or after a rollback, a
/// snapshot the domain now refuses) is skipped, counted and logged: the stream goes on past it,
/// and so does every reconnect. Before, every stream of the account ended INTERNAL at that event,
/// again at every reconnect.
#[tokio::test]
async fn an_event_this_build_cannot_read_is_skipped_and_the_stream_and_its_reconnects_go_on() {
    let app = TestApp::spawn_with(|settings| {
        settings.outbound_webhooks.watch_max_duration = Duration::from_secs(300);
        crate::support::with_metrics(settings);
    })
    .await;
    let mut stream = watch(&app, v1::WatchEventsRequest::default()).await;
    let before = app.create_ticket("before").await.id;
    super::stuck_endpoints::write_unreadable_events(&app).await;
    let after = app.create_ticket("after").await.id;

    let received = next_events(&mut stream, 2).await;
    assert_eq!(
        received
            .iter()
            .map(|(event, _)| ticket_id(event))
            .collect::<Vec<_>>(),
        [before, after.clone()]
    );
    let mut resumed = watch(
        &app,
        v1::WatchEventsRequest {
            after_event_id: received[0].0.id.clone(),
            ..Default::default()
        },
    )
    .await;
    let again = next_events(&mut resumed, 1).await;
    assert_eq!(ticket_id(&again[0].0), after);
    assert_eq!(
        crate::support::Scrape::of(&app)
            .await
            .get("supportdesk_events_unreadable_total{consumer=\"watch\"}"),
        4,
        "each unreadable event once per stream"
    );
}

#[tokio::test]
async fn a_reader_that_stops_reading_holds_the_stream_back_and_then_receives_everything_in_order() {
    let app = TestApp::spawn_with(|settings| {
        settings.outbound_webhooks.watch_max_duration = Duration::from_secs(300);
    })
    .await;
    let mut stream = watch(&app, v1::WatchEventsRequest::default()).await;
    // 5,000 events in one statement: far more than the stream's page, buffer and HTTP/2 windows.
    let mut conn = app.database.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "INSERT INTO tickets (id, account_id, subject, description, priority, status, requester_id) \
             SELECT gen_random_uuid(), $1, 'bulk ' || n, 'from a backlog', 'normal', 'new', $2 \
             FROM generate_series(1, 5000) n",
        )
        .bind::<diesel::sql_types::Uuid, _>(app.account_id.as_uuid())
        .bind::<diesel::sql_types::Uuid, _>(app.admin.id.as_uuid()),
        &mut conn,
    )
    .await
    .unwrap();
    let mut received = next_events(&mut stream, 1).await;

    // The reader stops. Once the stream has filled what lies between it and the reader (its
    // buffer, the HTTP/2 windows) it must go quiet; one that went on reading would soon ask for
    // its next page (or, caught up, poll), and with the outbox locked that query would wait.
    let started = tokio::time::Instant::now();
    let mut quiet_samples = 0;
    while quiet_samples < 15 {
        assert!(started.elapsed() < PATIENCE, "the stream never went quiet");
        if busy_backends(&app.database).await == 0 {
            quiet_samples += 1;
        } else {
            quiet_samples = 0;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    diesel_async::RunQueryDsl::execute(diesel::sql_query("BEGIN"), &mut conn)
        .await
        .unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"),
        &mut conn,
    )
    .await
    .unwrap();
    for _ in 0..40 {
        assert_eq!(
            backends_waiting_on_locks(&app.database).await,
            0,
            "the stream kept reading while its reader did not"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    diesel_async::RunQueryDsl::execute(diesel::sql_query("ROLLBACK"), &mut conn)
        .await
        .unwrap();

    received.extend(next_events(&mut stream, 4999).await);
    let subjects: Vec<String> = received
        .iter()
        .map(|(event, _)| match &event.data {
            Some(v1::event::Data::Ticket(ticket)) => ticket.subject.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let mut unique = subjects.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5000, "every event once");
    let cursors: Vec<&String> = received.iter().map(|(_, cursor)| cursor).collect();
    assert!(
        cursors.windows(2).all(|pair| {
            let parse = |cursor: &str| {
                let (txid, seq) = cursor.split_once('.').unwrap();
                (txid.parse::<i64>().unwrap(), seq.parse::<i64>().unwrap())
            };
            parse(pair[0]) < parse(pair[1])
        }),
        "in the outbox's order"
    );
}

/// A stream started from now on a quiet account sends only heartbeats; the client that
/// reconnects with a heartbeat's cursor is taken back and gets what was written since.
#[tokio::test]
async fn a_stream_started_from_now_is_resumed_from_the_cursor_of_a_heartbeat_sent_before_any_event()
{
    let app = TestApp::spawn_with(|settings| {
        settings.outbound_webhooks.watch_max_duration = Duration::from_secs(300);
        settings.outbound_webhooks.watch_heartbeat = Duration::from_millis(200);
    })
    .await;
    let mut stream = watch(&app, v1::WatchEventsRequest::default()).await;
    let heartbeat = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a heartbeat within the patience")
        .expect("the stream goes on")
        .expect("the stream is open");
    assert_eq!(
        heartbeat.event, None,
        "a quiet account sends only heartbeats"
    );
    drop(stream);

    let created = app.create_ticket("written while disconnected").await.id;
    let mut resumed = watch(
        &app,
        v1::WatchEventsRequest {
            cursor: heartbeat.cursor.clone(),
            ..Default::default()
        },
    )
    .await;

    let missed = next_events(&mut resumed, 1).await;
    assert_eq!(ticket_id(&missed[0].0), created);
}

#[tokio::test]
async fn a_stream_is_refused_a_cursor_or_event_id_that_is_not_one_of_ours() {
    let app = TestApp::spawn_with(|settings| {
        settings.outbound_webhooks.watch_max_duration = Duration::from_secs(300);
    })
    .await;
    for (request, field) in [
        (
            v1::WatchEventsRequest {
                cursor: "yesterday".to_owned(),
                ..Default::default()
            },
            "cursor",
        ),
        (
            v1::WatchEventsRequest {
                after_event_id: "evt_nothex".to_owned(),
                ..Default::default()
            },
            "after_event_id",
        ),
        (
            v1::WatchEventsRequest {
                event_types: vec!["ticket.exploded".to_owned()],
                ..Default::default()
            },
            "event_types",
        ),
    ] {
        let refused = events(&app)
            .watch_events(app.as_admin(request))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(crate::support::violated_fields(&refused), [field]);
    }
    let unknown = events(&app)
        .watch_events(app.as_admin(v1::WatchEventsRequest {
            after_event_id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert_reason(&unknown, Reason::EventNotFound);
}

/// Reads `stream` (heartbeats and all) until it ends with an error, which it returns; fails
/// when it ends without one or goes on past the patience.
async fn the_error_ending(stream: &mut Streaming<v1::WatchEventsResponse>) -> tonic::Status {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended without an error"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ended within the patience")
}

#[tokio::test]
async fn a_revoked_api_key_ends_its_open_stream_unauthenticated() {
    let app = TestApp::spawn_with(|settings| {
        settings.outbound_webhooks.watch_max_duration = Duration::from_secs(300);
        settings.outbound_webhooks.watch_heartbeat = Duration::from_millis(200);
    })
    .await;
    let key = app
        .api_key("watcher")
        .roles(&[v1::UserRole::Admin])
        .create()
        .await;
    let mut stream = events(&app)
        .watch_events(with_token(&key.secret, v1::WatchEventsRequest::default()))
        .await
        .expect("the key's stream starts")
        .into_inner();
    stream
        .message()
        .await
        .expect("a heartbeat")
        .expect("the stream is open");
    app.api_keys
        .clone()
        .revoke_api_key(keyed(app.as_admin(v1::RevokeApiKeyRequest {
            id: key.api_key.expect("the key").id,
        })))
        .await
        .expect("the key is revoked");

    let status = the_error_ending(&mut stream).await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_reason(&status, Reason::ApiKeyRevoked);
}

#[tokio::test]
async fn an_access_tokens_stream_ends_unauthenticated_when_the_token_expires() {
    let app = TestApp::spawn_with(|settings| {
        settings.outbound_webhooks.watch_max_duration = Duration::from_secs(300);
        settings.outbound_webhooks.watch_heartbeat = Duration::from_millis(200);
        settings.auth.access_token_ttl = Duration::from_secs(6);
    })
    .await;
    let mut stream = watch(&app, v1::WatchEventsRequest::default()).await;

    let status = the_error_ending(&mut stream).await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_reason(&status, Reason::TokenExpired);
}

/// A stream's place is its task's: a reader that keeps the stream open and reads nothing,
/// while the service has only heartbeats to send it, still has its stream ended at its longest
/// duration, and the account's place comes free for another stream.
#[tokio::test]
async fn a_stream_whose_reader_stopped_reading_ends_at_its_limit_and_gives_its_place_back() {
    let app = TestApp::spawn_with(|settings| {
        settings.outbound_webhooks.watch_max_duration = Duration::from_secs(4);
        settings.outbound_webhooks.watch_heartbeat = Duration::from_millis(10);
        settings.outbound_webhooks.watch_poll_interval = Duration::from_millis(10);
        settings.outbound_webhooks.watch_max_per_account = 1;
    })
    .await;
    // HTTP/2 windows of 1 KiB: heartbeats fill them, and then the stream's buffer, within a
    // second; from then on the service waits on its heartbeat's send.
    let channel = Channel::from_shared(format!("http://{}", app.address))
        .unwrap()
        .initial_stream_window_size(1024)
        .initial_connection_window_size(1024)
        .connect_lazy();
    let mut stalled = EventServiceClient::new(channel)
        .watch_events(app.as_admin(v1::WatchEventsRequest::default()))
        .await
        .expect("the first stream starts")
        .into_inner();
    stalled
        .message()
        .await
        .expect("a heartbeat")
        .expect("the stream is open");

    let refused = events(&app)
        .watch_events(app.as_admin(v1::WatchEventsRequest::default()))
        .await
        .expect_err("a second stream of the account is refused while the first runs");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert_reason(&refused, Reason::StreamLimit);

    wait_until(
        "the stalled stream's place is free again",
        PATIENCE,
        || async {
            events(&app)
                .watch_events(app.as_admin(v1::WatchEventsRequest::default()))
                .await
                .is_ok()
        },
    )
    .await;
    drop(stalled);
}

/// What one stream of [`caught_up_streams_cost_postgresql_one_shared_tail_and_each_gets_its_accounts_events_once_in_order`]
/// received: each event's id and cursor, in order.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, (i64, i64))>>>;

/// Reads `stream` into `received` until it ends.
fn collect(mut stream: Streaming<v1::WatchEventsResponse>) -> Received {
    let received = Received::default();
    tokio::spawn({
        let received = received.clone();
        async move {
            while let Ok(Some(message)) = stream.message().await {
                if let Some(event) = message.event {
                    let (txid, seq) = message.cursor.split_once('.').expect("a cursor");
                    received.lock().unwrap().push((
                        event.id,
                        (txid.parse().expect("txid"), seq.parse().expect("seq")),
                    ));
                }
            }
        }
    });
    received
}

/// The ids of the account's `ticket.created` events, as PostgreSQL orders the feed.
async fn created_events_of(app: &TestApp, account_id: uuid::Uuid) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    let mut conn = app.database.connect().await;
    let ids: Vec<Id> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT id FROM events WHERE account_id = $1 AND endpoint_id IS NULL \
               AND type = 'ticket.created' ORDER BY txid, seq",
        )
        .bind::<diesel::sql_types::Uuid, _>(account_id),
        &mut conn,
    )
    .await
    .unwrap();
    ids.into_iter()
        .map(|row| supportdesk::domain::event_public_id(row.id))
        .collect()
}

/// Issue 67, item 1: each caught-up stream used to read its account's next page itself every
/// poll interval, so twenty streams cost PostgreSQL twenty reads per interval (and a pooled
/// connection each time). Now the instance's one tail reads every account's new events once per
/// interval and the streams share its pages: over rounds of writes to five accounts, the
/// round trips the service makes are at most those of one tail (one read per poll interval
/// elapsed, and one per round of slack) plus the callers' re-checks (one per stream and
/// `RECHECK_EVERY`) and what opening the pool's connections costs, and every stream still receives every event of its account,
/// exactly once, in the outbox's order. Counted on the wire by a proxy in front of PostgreSQL;
/// the elapsed time only bounds how many polls one tail may have made.
#[tokio::test]
async fn caught_up_streams_cost_postgresql_one_shared_tail_and_each_gets_its_accounts_events_once_in_order()
 {
    use secrecy::ExposeSecret;

    use crate::support::admin_database_url;
    use crate::support::proxy::{Protocol, TcpProxy, socket_address_of, url_through};

    const POLL: Duration = Duration::from_millis(50);
    const ACCOUNTS: usize = 5;
    const STREAMS_PER_ACCOUNT: usize = 4;
    const ROUNDS: usize = 10;
    const POOL: u32 = 4;
    let postgres = TcpProxy::start_counting(
        socket_address_of(&admin_database_url()),
        Some(Protocol::Postgres),
    )
    .await;
    let app = TestApp::spawn_with(|settings| {
        settings.database.url =
            url_through(settings.database.url.expose_secret(), postgres.address).into();
        settings.outbound_webhooks.watch_max_duration = Duration::from_secs(300);
        settings.outbound_webhooks.watch_heartbeat = Duration::from_secs(300);
        settings.outbound_webhooks.watch_poll_interval = POLL;
        settings.outbound_webhooks.watch_max_per_account = STREAMS_PER_ACCOUNT as u32;
        settings.outbound_webhooks.watch_max_per_instance = (ACCOUNTS * STREAMS_PER_ACCOUNT) as u32;
        // Nothing else reads PostgreSQL in the background while the streams are counted.
        settings.server.health_probe_interval = Duration::from_secs(3600);
        settings.idempotency.sweep_interval = Duration::from_secs(3600);
        settings.billing_completer_interval = Duration::from_secs(3600);
        settings.attachments.sweep_interval = Duration::from_secs(3600);
        settings.database.pool_size = POOL;
    })
    .await;
    let mut admins = vec![app.admin.clone()];
    for _ in 1..ACCOUNTS {
        admins.push(app.sign_up_another_account().await);
    }
    let mut streams: Vec<(uuid::Uuid, Received)> = Vec::new();
    for admin in &admins {
        for index in 0..STREAMS_PER_ACCOUNT {
            // Half of them filter on types (which the events written all have).
            let event_types = if index % 2 == 0 {
                Vec::new()
            } else {
                vec!["ticket.created".to_owned(), "ticket.updated".to_owned()]
            };
            let stream = events(&app)
                .watch_events(admin.request(v1::WatchEventsRequest {
                    event_types,
                    ..Default::default()
                }))
                .await
                .expect("the stream starts")
                .into_inner();
            streams.push((admin.account_id.as_uuid(), collect(stream)));
        }
    }

    let mut conn = app.database.connect().await;
    let mut write_round = async |round: usize| {
        for admin in &admins {
            diesel_async::RunQueryDsl::execute(
                diesel::sql_query(
                    "INSERT INTO tickets (id, account_id, subject, description, priority, status, requester_id) \
                     SELECT gen_random_uuid(), $1, 'round ' || $3 || ' ticket ' || n, 'x', 'normal', 'new', $2 \
                     FROM generate_series(1, 2) n",
                )
                .bind::<diesel::sql_types::Uuid, _>(admin.account_id.as_uuid())
                .bind::<diesel::sql_types::Uuid, _>(admin.id.as_uuid())
                .bind::<diesel::sql_types::Integer, _>(i32::try_from(round).unwrap()),
                &mut conn,
            )
            .await
            .unwrap();
        }
        let expected = 2 * (round + 1);
        wait_until(
            "every stream received the round's events",
            PATIENCE,
            || async {
                streams
                    .iter()
                    .all(|(_, received)| received.lock().unwrap().len() >= expected)
            },
        )
        .await;
    };
    // Two first rounds bring every stream to the tail (its catch-up and joining reads are not
    // counted); the rounds after them are.
    write_round(0).await;
    write_round(1).await;
    let before = postgres.round_trips();
    let started = tokio::time::Instant::now();
    for round in 2..ROUNDS + 2 {
        write_round(round).await;
    }
    let round_trips = postgres.round_trips() - before;
    let elapsed = started.elapsed();

    let polls = u64::try_from(elapsed.as_millis() / POLL.as_millis()).unwrap() + 1;
    let one_tail = polls + ROUNDS as u64;
    // A pooled connection opened meanwhile: its setup, and the first preparation of the tail's
    // statement and of the re-check's.
    let connections = 3 * u64::from(POOL);
    let rechecks = (ACCOUNTS * STREAMS_PER_ACCOUNT) as u64
        * (u64::try_from(elapsed.as_millis() / supportdesk::auth::RECHECK_EVERY.as_millis())
            .unwrap()
            + 1);
    assert!(
        round_trips <= one_tail + rechecks + connections,
        "{} caught-up streams made {round_trips} round trips to PostgreSQL in {elapsed:?}; one \
         tail polling every {POLL:?} makes at most {one_tail}, the callers' re-checks at most \
         {rechecks}, and opening the pool's {POOL} connections at most {connections}",
        ACCOUNTS * STREAMS_PER_ACCOUNT
    );

    for (account_id, received) in &streams {
        let expected = created_events_of(&app, *account_id).await;
        assert_eq!(expected.len(), 2 * (ROUNDS + 2));
        let received = received.lock().unwrap().clone();
        let ids: Vec<String> = received.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            ids, expected,
            "a stream of account {account_id} received each of its events once, in order"
        );
        assert!(
            received.windows(2).all(|pair| pair[0].1 < pair[1].1),
            "cursors increase"
        );
    }
}
