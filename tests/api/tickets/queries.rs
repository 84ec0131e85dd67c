//! Listing and reading tickets: filters, orders, page tokens bound to their query, index-only
//! plans over 100,000 tickets, and the Redis cache behind GetTicket.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::RunQueryDsl;
use redis::AsyncCommands;
use secrecy::ExposeSecret;
use supportdesk::configuration::RedisSettings;
use supportdesk::db::Explain;
use supportdesk::db::models::TicketRow;
use supportdesk::db::models::custom_field::CustomFieldRow;
use supportdesk::db::models::ticket_filter::{self, CountedList};
use supportdesk::domain::{
    AccountId, Email, FilterContext, PageCursor, Ticket, TicketDescription, TicketFilter,
    TicketFilterExpr, TicketId, TicketOrder, TicketOrderField, TicketPriority, TicketStatus,
    TicketSubject, Timestamp, UserId,
};
use supportdesk::redis::keys::RedisKeys;
use supportdesk::redis::ticket_cache::{Cached, TicketCache, read_entry};
use supportdesk::telemetry::metrics::Metrics;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::proxy::{TcpProxy, socket_address_of, url_through};
use crate::support::{
    PATIENCE, TestApp, TestDatabase, backends_waiting_on_locks, count_of, redis_url,
    second_instance, sent_again_while_a_dependency_is_unavailable, valid_create_request,
    violated_fields, wait_until, with_key,
};

async fn list(app: &TestApp, request: v1::ListTicketsRequest) -> v1::ListTicketsResponse {
    app.tickets
        .clone()
        .list_tickets(app.as_admin(request))
        .await
        .expect("listed")
        .into_inner()
}

fn subjects(response: &v1::ListTicketsResponse) -> Vec<&str> {
    response
        .tickets
        .iter()
        .map(|ticket| ticket.subject.as_str())
        .collect()
}

#[tokio::test]
async fn tickets_are_filtered_by_status_priority_assignee_requester_and_creation_time() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let urgent = app
        .ticket("urgent")
        .priority(v1::TicketPriority::Urgent)
        .requester("bob@example.com")
        .create()
        .await;
    let assigned = app.create_ticket("assigned").await;
    app.tickets
        .clone()
        .assign_ticket(app.as_admin(v1::AssignTicketRequest {
            id: assigned.id.clone(),
            assignee_id: agent.id.to_string(),
            etag: String::new(),
            group_id: None,
        }))
        .await
        .unwrap();
    let boundary = prost_types::Timestamp::from(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_millis(5)).await;
    app.create_ticket("latest").await;

    let by = |request: v1::ListTicketsRequest| list(&app, request);
    assert_eq!(
        subjects(
            &by(v1::ListTicketsRequest {
                statuses: vec![v1::TicketStatus::Open.into()],
                ..Default::default()
            })
            .await
        ),
        ["assigned"]
    );
    assert_eq!(
        subjects(
            &by(v1::ListTicketsRequest {
                statuses: vec![v1::TicketStatus::New.into()],
                ..Default::default()
            })
            .await
        ),
        ["latest", "urgent"]
    );
    assert_eq!(
        subjects(
            &by(v1::ListTicketsRequest {
                priorities: vec![v1::TicketPriority::Urgent.into()],
                ..Default::default()
            })
            .await
        ),
        ["urgent"]
    );
    assert_eq!(
        subjects(
            &by(v1::ListTicketsRequest {
                assignee_id: agent.id.to_string(),
                ..Default::default()
            })
            .await
        ),
        ["assigned"]
    );
    assert_eq!(
        subjects(
            &by(v1::ListTicketsRequest {
                requester_id: urgent.requester_id.clone(),
                ..Default::default()
            })
            .await
        ),
        ["urgent"]
    );
    assert_eq!(
        subjects(
            &by(v1::ListTicketsRequest {
                created_after: Some(boundary),
                ..Default::default()
            })
            .await
        ),
        ["latest"]
    );
    assert_eq!(
        subjects(
            &by(v1::ListTicketsRequest {
                created_before: Some(boundary),
                order_by: "create_time asc".to_owned(),
                ..Default::default()
            })
            .await
        ),
        ["urgent", "assigned"]
    );
    assert_eq!(
        subjects(
            &by(v1::ListTicketsRequest {
                order_by: "update_time desc".to_owned(),
                ..Default::default()
            })
            .await
        ),
        ["latest", "assigned", "urgent"],
        "the assignment touched `assigned` after `urgent` was created"
    );
}

#[tokio::test]
async fn bad_filters_are_named_and_a_page_token_only_works_with_its_own_query() {
    let app = TestApp::spawn().await;
    for number in 0..3 {
        app.create_ticket(&format!("ticket {number}")).await;
    }
    let status = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            statuses: vec![0, 99],
            assignee_id: "nobody".to_owned(),
            order_by: "subject".to_owned(),
            ..Default::default()
        }))
        .await
        .expect_err("refused");
    assert_eq!(
        violated_fields(&status),
        ["statuses[0]", "statuses[1]", "assignee_id", "order_by"]
    );

    let first = list(
        &app,
        v1::ListTicketsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    let status = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
            order_by: "update_time desc".to_owned(),
            ..Default::default()
        }))
        .await
        .expect_err("a token of another query");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_token"]);
}

#[tokio::test]
async fn paging_by_update_time_never_repeats_a_ticket_while_tickets_change() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for number in 0..30 {
        ids.push(app.create_ticket(&format!("ticket {number}")).await.id);
    }
    let untouched: HashSet<String> = ids[..15].iter().cloned().collect();
    let writer = {
        let tickets = app.tickets.clone();
        let admin = app.admin.clone();
        let touched = ids[15..].to_vec();
        tokio::spawn(async move {
            for id in touched {
                tickets
                    .clone()
                    .update_ticket(admin.request(v1::UpdateTicketRequest {
                        ticket: Some(v1::Ticket {
                            id,
                            priority: v1::TicketPriority::High.into(),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["priority".to_owned()],
                        }),
                    }))
                    .await
                    .expect("updated while paging");
            }
        })
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(
            &app,
            v1::ListTicketsRequest {
                page_size: 4,
                page_token: token,
                order_by: "update_time desc".to_owned(),
                ..Default::default()
            },
        )
        .await;
        seen.extend(page.tickets.into_iter().map(|ticket| ticket.id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    writer.await.unwrap();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no ticket twice");
    for id in &untouched {
        assert!(seen.contains(id), "an unchanged ticket was skipped");
    }
}

#[tokio::test]
async fn every_ticket_list_query_is_served_by_an_index_over_100000_tickets() {
    let database = TestDatabase::create().await;
    let mut conn = database.connect().await;
    let account = AccountId::generate();
    let agent = UserId::generate();
    let requester = UserId::generate();
    diesel::sql_query(
        "INSERT INTO accounts (id, name, slug) VALUES ($1, 'Big', 'big'), \
         (gen_random_uuid(), 'Other', 'other')",
    )
    .bind::<SqlUuid, _>(account.as_uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO users (id, account_id, email, role) \
         SELECT CASE WHEN n = 0 THEN $2 WHEN n = 1 THEN $3 ELSE gen_random_uuid() END, $1, \
                'user' || n || '@example.com', CASE WHEN n < 10 THEN 'agent' ELSE 'customer' END \
         FROM generate_series(0, 199) AS n",
    )
    .bind::<SqlUuid, _>(account.as_uuid())
    .bind::<SqlUuid, _>(agent.as_uuid())
    .bind::<SqlUuid, _>(requester.as_uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    let group = uuid::Uuid::now_v7();
    diesel::sql_query("INSERT INTO groups (id, account_id, name) VALUES ($1, $2, 'Billing')")
        .bind::<SqlUuid, _>(group)
        .bind::<SqlUuid, _>(account.as_uuid())
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query(
        "INSERT INTO custom_fields (id, account_id, key, title, kind, choices) VALUES \
         (gen_random_uuid(), $1, 'plan', 'Plan', 'single_choice', ARRAY['free', 'pro', 'ent']), \
         (gen_random_uuid(), $1, 'seats', 'Seats', 'integer', '{}'), \
         (gen_random_uuid(), $1, 'vip', 'VIP', 'checkbox', '{}'), \
         (gen_random_uuid(), $1, 'amount', 'Amount', 'decimal', '{}'), \
         (gen_random_uuid(), $1, 'due', 'Due', 'date', '{}'), \
         (gen_random_uuid(), $1, 'order_ref', 'Order', 'text', '{}'), \
         (gen_random_uuid(), $1, 'areas', 'Areas', 'multiple_choice', \
          ARRAY['billing', 'login', 'mobile'])",
    )
    .bind::<SqlUuid, _>(account.as_uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    let started = Instant::now();
    diesel::sql_query(
        "WITH people AS (SELECT array_agg(id) AS ids FROM users WHERE account_id = $1) \
         INSERT INTO tickets (id, account_id, subject, description, priority, status, \
                              requester_id, assignee_id, created_at, updated_at, tags, \
                              group_id, custom_fields) \
         SELECT gen_random_uuid(), $1, 'ticket ' || n, 'generated', \
                (ARRAY['low','normal','high','urgent'])[1 + n % 4], \
                (ARRAY['new','open','pending','solved','closed'])[1 + n % 5], \
                people.ids[11 + n % 190], \
                CASE WHEN n % 3 = 0 THEN NULL ELSE people.ids[1 + n % 10] END, \
                now() - n * interval '1 minute', now() - (n % 997) * interval '1 minute', \
                CASE WHEN n % 7 = 0 THEN ARRAY['vip'] WHEN n % 11 = 0 THEN ARRAY['spam', 'refund'] \
                     ELSE '{}' END, \
                CASE WHEN n % 13 = 0 THEN $2::uuid END, \
                jsonb_build_object('plan', (ARRAY['free', 'pro', 'ent'])[1 + n % 3], \
                    'seats', n % 50, 'vip', n % 17 = 0, 'amount', (n % 100) || '.5', \
                    'due', '2026-12-' || lpad((1 + n % 28)::text, 2, '0'), \
                    'order_ref', 'ORD-' || n, \
                    'areas', (ARRAY['[\"billing\"]', '[\"login\", \"mobile\"]', '[]'])[1 + n % 3]::jsonb) \
         FROM generate_series(1, 100000) AS n, people",
    )
    .bind::<SqlUuid, _>(account.as_uuid())
    .bind::<SqlUuid, _>(group)
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("ANALYZE")
        .execute(&mut conn)
        .await
        .unwrap();
    eprintln!("100,000 tickets in {:?}", started.elapsed());

    // Both bounds of a list by update time: the first page's snapshot, and the time an earlier
    // release's token carries.
    let cursor = Some(PageCursor {
        at: chrono::Utc::now() - chrono::Duration::days(3),
        id: uuid::Uuid::max(),
        until: Some(chrono::Utc::now()),
        snapshot: Some(supportdesk::domain::ListSnapshot::parse("1000:1002:1001").unwrap()),
    });
    let orders = [
        TicketOrder::NEWEST_CREATED_FIRST,
        TicketOrder {
            field: TicketOrderField::Created,
            descending: false,
        },
        TicketOrder {
            field: TicketOrderField::Updated,
            descending: true,
        },
        TicketOrder {
            field: TicketOrderField::Updated,
            descending: false,
        },
    ];
    let filters = [
        TicketFilter::default(),
        TicketFilter {
            statuses: vec![TicketStatus::Open],
            ..TicketFilter::default()
        },
        TicketFilter {
            statuses: vec![TicketStatus::New, TicketStatus::Open, TicketStatus::Pending],
            ..TicketFilter::default()
        },
        TicketFilter {
            priorities: vec![TicketPriority::Urgent],
            ..TicketFilter::default()
        },
        TicketFilter {
            assignee: Some(agent),
            ..TicketFilter::default()
        },
        TicketFilter {
            requester: Some(requester),
            ..TicketFilter::default()
        },
        TicketFilter {
            created_after: Some(Timestamp::from_stored(
                chrono::Utc::now() - chrono::Duration::days(10),
            )),
            created_before: Some(Timestamp::from_stored(
                chrono::Utc::now() - chrono::Duration::days(5),
            )),
            ..TicketFilter::default()
        },
        TicketFilter {
            statuses: vec![TicketStatus::Open],
            priorities: vec![TicketPriority::High],
            assignee: Some(agent),
            ..TicketFilter::default()
        },
    ];
    // Every form the filter language accepts (docs/tickets.md, "The filter language"): an
    // accepted filter that no index serves fails here.
    let catalogue = CustomFieldRow::catalogue_for_account(&mut conn, account.as_uuid())
        .await
        .unwrap();
    let context = FilterContext {
        me: Some(agent),
        custom_fields: &catalogue,
    };
    let mut filters = filters.to_vec();
    for text in [
        "status = open".to_owned(),
        "status = (new OR open OR pending)".to_owned(),
        "status != closed".to_owned(),
        "priority = urgent OR priority = high".to_owned(),
        "-priority: low".to_owned(),
        "assignee = me".to_owned(),
        "assignee = none".to_owned(),
        "assignee = (none OR me)".to_owned(),
        "assignee != me".to_owned(),
        "assignee != none".to_owned(),
        format!("requester = {requester}"),
        format!("requester != {requester}"),
        format!("group = {group}"),
        "group = none".to_owned(),
        format!("group != {group}"),
        "tags: vip".to_owned(),
        "tags: (spam AND refund)".to_owned(),
        "tags: (vip OR refund)".to_owned(),
        "-tags: spam".to_owned(),
        "create_time < now(-24h)".to_owned(),
        "create_time >= \"2026-01-01T00:00:00Z\" create_time < now()".to_owned(),
        "update_time > now(-7d)".to_owned(),
        "update_time <= now(-1h)".to_owned(),
        "assignee = none AND create_time < now(-24h)".to_owned(),
        "status = open AND tags: vip".to_owned(),
        format!("status = (open OR pending) tags: vip group = {group} priority != low"),
        "custom_fields.plan = pro".to_owned(),
        "custom_fields.plan = (pro OR ent)".to_owned(),
        "custom_fields.plan != free".to_owned(),
        "custom_fields.seats = 12".to_owned(),
        "custom_fields.vip = true".to_owned(),
        "custom_fields.amount = \"12.50\"".to_owned(),
        "custom_fields.due = \"2026-12-03\"".to_owned(),
        "custom_fields.order_ref = \"ORD-42\"".to_owned(),
        "custom_fields.areas: login".to_owned(),
        "custom_fields.areas: (login AND mobile)".to_owned(),
        "custom_fields.areas: (billing OR mobile)".to_owned(),
        "status = open AND custom_fields.plan = pro AND custom_fields.vip = true".to_owned(),
    ] {
        let expr = TicketFilterExpr::parse(&text, &context)
            .unwrap_or_else(|error| panic!("{text:?} refused: {error}"));
        filters.push(TicketFilter {
            expr,
            ..TicketFilter::default()
        });
    }
    let mut checked = 0;
    for order in orders {
        for filter in &filters {
            let filter = TicketFilter {
                order,
                ..filter.clone()
            };
            for (restricted_to, after) in [
                (None, None),
                (None, cursor.clone()),
                (Some(requester), cursor.clone()),
            ] {
                let query = TicketRow::list_query(account, restricted_to, &filter, after, 21);
                let plan: Vec<String> = Explain(query).load(&mut conn).await.unwrap();
                assert!(
                    !plan.iter().any(|line| line.contains("Seq Scan on tickets")),
                    "{filter:?} restricted to {restricted_to:?} scans the table:\n{}",
                    plan.join("\n")
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * filters.len() * 3);

    // Counted (CountViews, a list's total_size), the same conditions in each list order but
    // with a cap: still an index, never the table read until 101 rows match.
    for order in orders {
        for filter in &filters {
            for restricted_to in [None, Some(requester)] {
                let counted = [CountedList {
                    filter: filter.as_expr(restricted_to),
                    order,
                }];
                let query = ticket_filter::capped_counts(account.as_uuid(), &counted, 100);
                let plan: Vec<String> = Explain(query).load(&mut conn).await.unwrap();
                assert!(
                    !plan.iter().any(|line| line.contains("Seq Scan on tickets")),
                    "the count of {filter:?} in {order:?} restricted to {restricted_to:?} scans \
                     the table:\n{}",
                    plan.join("\n")
                );
            }
        }
    }

    // The detector itself works: a query no index serves is caught.
    use diesel::{ExpressionMethods, QueryDsl};
    use supportdesk::db::schema::tickets;
    let unindexed = tickets::table
        .filter(tickets::description.eq("generated"))
        .select(tickets::id)
        .into_boxed::<diesel::pg::Pg>();
    let plan: Vec<String> = Explain(unindexed).load(&mut conn).await.unwrap();
    assert!(
        plan.iter().any(|line| line.contains("Seq Scan on tickets")),
        "{plan:?}"
    );
}

fn cache_key(app: &TestApp, ticket: &v1::Ticket) -> String {
    format!(
        "{}ticket:{}:{}",
        app.redis_prefix, app.account_id, ticket.id
    )
}

#[tokio::test]
async fn get_ticket_reads_through_redis_and_no_write_leaves_a_stale_copy() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let ticket = app.create_ticket("cached").await;
    let get = || {
        let mut tickets = app.tickets.clone();
        let request = app.as_admin(v1::GetTicketRequest {
            id: ticket.id.clone(),
            ..Default::default()
        });
        async move {
            tickets
                .get_ticket(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    get().await.unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let cached: Option<Vec<u8>> = redis.get(cache_key(&app, &ticket)).await.unwrap();
    let (_, cached) = read_entry(&cached.expect("the ticket is in Redis")).expect("an entry");
    assert_eq!(cached.expect("not a tombstone").subject.as_str(), "cached");
    let ttl: i64 = redis.ttl(cache_key(&app, &ticket)).await.unwrap();
    assert!(
        (1..=300).contains(&ttl),
        "expires within the configured 5 minutes: {ttl}"
    );

    // Proof that reads come from the cache: a change behind the service's back is not seen...
    let mut conn = app.database.connect().await;
    diesel::sql_query("UPDATE tickets SET subject = 'behind its back' WHERE id = $1")
        .bind::<SqlUuid, _>(uuid::Uuid::parse_str(&ticket.id).unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(get().await.unwrap().subject, "cached");

    // ...while every change made through the service is, at once.
    let updated = app
        .tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                priority: v1::TicketPriority::Low.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["priority".to_owned()],
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(get().await.unwrap(), updated);
    let assigned = app
        .tickets
        .clone()
        .assign_ticket(app.as_admin(v1::AssignTicketRequest {
            id: ticket.id.clone(),
            assignee_id: agent.id.to_string(),
            etag: String::new(),
            group_id: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(get().await.unwrap(), assigned);
    app.comment(&ticket.id, "noted").add().await;
    assert_ne!(
        get().await.unwrap().etag,
        assigned.etag,
        "a comment changes the ticket"
    );
    let solved = app
        .tickets
        .clone()
        .resolve_ticket(app.as_admin(v1::ResolveTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(get().await.unwrap(), solved);
    let reopened = app
        .tickets
        .clone()
        .reopen_ticket(app.as_admin(v1::ReopenTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(get().await.unwrap(), reopened);
    app.tickets
        .clone()
        .resolve_ticket(app.as_admin(v1::ResolveTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    let closed = app
        .tickets
        .clone()
        .close_ticket(app.as_admin(v1::CloseTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(get().await.unwrap(), closed);
    app.tickets
        .clone()
        .delete_ticket(app.as_admin(v1::DeleteTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    assert_eq!(get().await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn with_redis_down_tickets_are_still_served_from_postgres() {
    let proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let app = TestApp::spawn_with(|settings| {
        let url = url_through(settings.redis.url.expose_secret(), proxy.address);
        settings.redis.url = url.into();
        // What a read waiting on the dead Redis would run into.
        settings.server.request_timeout = Duration::from_secs(30);
    })
    .await;
    let ticket = app.create_ticket("survives").await;
    proxy.cut();
    for _ in 0..3 {
        let started = Instant::now();
        let fetched = app
            .tickets
            .clone()
            .get_ticket(app.as_admin(v1::GetTicketRequest {
                id: ticket.id.clone(),
                ..Default::default()
            }))
            .await
            .expect("served without Redis")
            .into_inner();
        assert_eq!(fetched.subject, "survives");
        // Milliseconds, or seconds on a loaded machine: not the request deadline.
        assert!(started.elapsed() < Duration::from_secs(8));
    }
    let updated = app
        .tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                subject: "changed while Redis was away".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["subject".to_owned()],
            }),
        }))
        .await
        .expect("writes go on without the cache");
    assert_eq!(updated.into_inner().subject, "changed while Redis was away");
}

#[tokio::test]
async fn a_write_made_while_redis_was_cut_off_reaches_the_cache_once_redis_is_back() {
    let proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let app = TestApp::spawn_with(|settings| {
        settings.redis.url = url_through(settings.redis.url.expose_secret(), proxy.address).into();
    })
    .await;
    let ticket = app.create_ticket("cached before the cut").await;
    app.get_ticket(&ticket.id).await.expect("read, and cached");
    let client = redis::Client::open(redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let cached_version = |entry: Option<Vec<u8>>| -> i64 {
        read_entry(&entry.expect("an entry"))
            .expect("of this layout")
            .0
    };
    let key = cache_key(&app, &ticket);
    let before = cached_version(redis.get(&key).await.unwrap());

    proxy.cut();
    let updated = app
        .tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                subject: "changed while Redis was cut off".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["subject".to_owned()],
            }),
        }))
        .await
        .expect("writes go on without Redis")
        .into_inner();
    assert_eq!(
        cached_version(redis.get(&key).await.unwrap()),
        before,
        "the instance could not reach Redis: the old entry is still there"
    );

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (version, cached) =
            read_entry(&redis.get::<_, Vec<u8>>(&key).await.unwrap()).expect("an entry");
        let cached = cached.expect("not a tombstone");
        if cached.subject.as_str() == "changed while Redis was cut off" {
            assert!(version > before);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the write never reached the cache: {cached:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get_ticket(&ticket.id).await.unwrap(), updated);
}

/// The advisory lock a deferred trigger waits for when a ticket update commits
/// ([`hold_ticket_commits`]).
const HELD_AT_COMMIT: i64 = 6_710;

/// Makes every COMMIT of a ticket update in `database` wait until the returned connection lets
/// go of [`HELD_AT_COMMIT`]: a deferred constraint trigger takes the lock when the transaction
/// commits, so the update is written and its COMMIT sent, and PostgreSQL holds the answer.
async fn hold_ticket_commits(database: &TestDatabase) -> diesel_async::AsyncPgConnection {
    use diesel_async::SimpleAsyncConnection;
    let mut conn = database.connect().await;
    conn.batch_execute(&format!(
        "CREATE FUNCTION held_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_advisory_xact_lock_shared({HELD_AT_COMMIT}); RETURN NULL; END $$; \
         CREATE CONSTRAINT TRIGGER held_at_commit AFTER UPDATE ON tickets \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION held_at_commit(); \
         SELECT pg_advisory_lock({HELD_AT_COMMIT})"
    ))
    .await
    .expect("the commits of ticket updates are held");
    conn
}

/// UpdateTicket of `ticket`'s subject to `subject`.
fn subject_update(ticket: &v1::Ticket, subject: &str) -> v1::UpdateTicketRequest {
    v1::UpdateTicketRequest {
        ticket: Some(v1::Ticket {
            id: ticket.id.clone(),
            subject: subject.to_owned(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["subject".to_owned()],
        }),
    }
}

/// Sends `request` (an update of `ticket`'s subject to `subject`) to `app`, whose PostgreSQL is
/// behind `proxy`, so that its COMMIT reaches PostgreSQL and the answer never comes back: the
/// connection is cut while PostgreSQL holds the commit, the call fails, and the commit then
/// completes. Returns the call's status once PostgreSQL holds the change.
async fn an_update_whose_commit_answer_is_lost(
    app: &TestApp,
    proxy: &TcpProxy,
    request: tonic::Request<v1::UpdateTicketRequest>,
    ticket: &v1::Ticket,
    subject: &str,
) -> tonic::Status {
    let mut held = hold_ticket_commits(&app.database).await;
    let mut tickets = app.tickets.clone();
    let call = tokio::spawn(async move { tickets.update_ticket(request).await });
    wait_until("the update's COMMIT waits", PATIENCE, async || {
        backends_waiting_on_locks(&app.database).await == 1
    })
    .await;
    proxy.cut();
    let status = call
        .await
        .expect("joined")
        .expect_err("the commit's answer was lost");
    proxy.restore();
    diesel::sql_query(format!("SELECT pg_advisory_unlock({HELD_AT_COMMIT})"))
        .execute(&mut held)
        .await
        .expect("the commit goes on");
    let committed = format!(
        "SELECT count(*) AS count FROM tickets WHERE id = '{}' AND subject = '{subject}'",
        ticket.id
    );
    wait_until("the update is committed", PATIENCE, async || {
        count_of(&app.database, &committed).await == 1
    })
    .await;
    status
}

/// A write whose COMMIT answer was lost (the connection cut while PostgreSQL committed) may have
/// committed: the instance invalidates the ticket's entry rather than leave the version before
/// it, and its own next read (whose entry admission prefetched from Redis, still the old one)
/// prefers what the instance knows.
#[tokio::test]
async fn an_update_whose_commit_answer_was_lost_is_read_as_committed_not_as_cached_before() {
    let (proxy, app) = crate::server::dependencies::app_behind_a_postgres_proxy(|_| {}).await;
    let ticket = app.create_ticket("before the lost answer").await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = cache_key(&app, &ticket);
    let raw: Vec<u8> = redis.get(&key).await.unwrap();
    assert!(read_entry(&raw).is_some(), "the create cached the ticket");

    let status = an_update_whose_commit_answer_is_lost(
        &app,
        &proxy,
        app.as_admin(subject_update(&ticket, "after the lost answer")),
        &ticket,
        "after the lost answer",
    )
    .await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let read = sent_again_while_a_dependency_is_unavailable(|| app.get_ticket(&ticket.id))
        .await
        .expect("read");
    assert_eq!(read.subject, "after the lost answer");
    let raw: Vec<u8> = redis.get(&key).await.unwrap();
    let (_, cached) = read_entry(&raw).expect("an entry of this layout");
    assert_eq!(
        cached.expect("not a tombstone").subject.as_str(),
        "after the lost answer",
        "what every instance reads"
    );
}

/// The client of a write whose answer was lost sends it again with its idempotency key; the
/// replay, on another instance, brings the cache to the ticket as committed, even when the
/// instance that wrote it never reaches Redis again (here: cut off from it).
#[tokio::test]
async fn the_replay_of_an_update_whose_commit_answer_was_lost_brings_the_cache_to_the_committed_ticket()
 {
    let redis_proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let (proxy, app) = crate::server::dependencies::app_behind_a_postgres_proxy(|settings| {
        let url = url_through(settings.redis.url.expose_secret(), redis_proxy.address);
        settings.redis.url = url.into();
    })
    .await;
    let ticket = app.create_ticket("before the lost answer").await;
    let mut settings = app.settings.clone();
    settings.redis.url = redis_url().into();
    settings.database.url = app.database.url();
    let (channel, _other_instance) = second_instance(&settings).await;
    let mut other = v1::ticket_service_client::TicketServiceClient::new(channel);
    let key = uuid::Uuid::now_v7().to_string();
    let request = || {
        with_key(
            app.as_admin(subject_update(&ticket, "after the lost answer")),
            &key,
        )
    };
    let read_there = async |other: &mut v1::ticket_service_client::TicketServiceClient<
        tonic::transport::Channel,
    >| {
        other
            .get_ticket(app.as_admin(v1::GetTicketRequest {
                id: ticket.id.clone(),
                ..Default::default()
            }))
            .await
            .expect("read")
            .into_inner()
    };
    assert_eq!(
        read_there(&mut other).await.subject,
        "before the lost answer"
    );

    redis_proxy.cut();
    an_update_whose_commit_answer_is_lost(
        &app,
        &proxy,
        request(),
        &ticket,
        "after the lost answer",
    )
    .await;
    let replayed = other.update_ticket(request()).await.expect("replayed");
    assert_eq!(replayed.into_inner().subject, "after the lost answer");

    assert_eq!(
        read_there(&mut other).await.subject,
        "after the lost answer"
    );
}

#[tokio::test]
async fn an_entry_an_earlier_release_wrote_is_a_miss_and_its_version_still_holds_back_older_ones() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("cached").await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = cache_key(&app, &ticket);
    let raw: Vec<u8> = redis.get(&key).await.unwrap();
    let (version, _) = read_entry(&raw).expect("the create cached the ticket");
    let mut conn = app.database.connect().await;
    diesel::sql_query("UPDATE tickets SET subject = 'only in PostgreSQL' WHERE id = $1")
        .bind::<SqlUuid, _>(uuid::Uuid::parse_str(&ticket.id).unwrap())
        .execute(&mut conn)
        .await
        .unwrap();

    // The JSON entry of release 2 (schema 2), at a later version than the row: not read...
    let newer = format!(
        r#"{{"version":{},"schema":2,"ticket":{{"subject":"from the old release"}}}}"#,
        version + 10
    );
    let _: () = redis.set(&key, &newer).await.unwrap();
    let fetched = app.get_ticket(&ticket.id).await.expect("served");
    assert_eq!(fetched.subject, "only in PostgreSQL");
    // ...and not replaced by the older version this miss read.
    let kept: Vec<u8> = redis.get(&key).await.unwrap();
    assert_eq!(kept, newer.as_bytes());

    // An earlier version of the old layout is replaced by the row's, in this release's layout.
    let older = format!(r#"{{"version":{},"schema":2}}"#, version - 1);
    let _: () = redis.set(&key, &older).await.unwrap();
    app.get_ticket(&ticket.id).await.expect("served");
    let replaced: Vec<u8> = redis.get(&key).await.unwrap();
    let (stored_version, stored) = read_entry(&replaced).expect("this release's layout");
    assert_eq!(stored_version, version);
    assert_eq!(stored.unwrap().subject.as_str(), "only in PostgreSQL");
}

/// A ticket cache of its own (keys under a fresh prefix) reaching Redis through `proxy`, which
/// rests 1 ms after a failure.
fn a_cache_through(proxy: &TcpProxy) -> TicketCache {
    a_cache_at(
        &url_through(&redis_url(), proxy.address),
        &format!("cache-{}:", uuid::Uuid::now_v7()),
        Duration::from_secs(300),
    )
}

/// A ticket cache reaching Redis at `url`, its keys under `prefix`, its entries kept `ttl`.
fn a_cache_at(url: &str, prefix: &str, ttl: Duration) -> TicketCache {
    let settings = RedisSettings {
        url: url.to_owned().into(),
        key_prefix: prefix.to_owned(),
        connect_timeout: Duration::from_secs(2),
        failure_pause: Duration::from_millis(1),
    };
    TicketCache::new(
        supportdesk::redis::connection::build_pool(&settings).unwrap(),
        RedisKeys::new(settings.key_prefix.clone()),
        ttl,
        &Metrics::default(),
    )
}

/// An entry kept for repair longer than the TTL is dropped, not stored: the older entry it was
/// to replace has expired, and so may have the newer one another instance stored meanwhile,
/// which storing it would bring back as an older version for a whole TTL.
#[tokio::test]
async fn an_entry_kept_for_repair_past_the_ttl_does_not_come_back_over_a_newer_one_that_expired() {
    let proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let prefix = format!("cache-{}:", uuid::Uuid::now_v7());
    let ttl = Duration::from_secs(1);
    let cut_off = a_cache_at(&url_through(&redis_url(), proxy.address), &prefix, ttl);
    let other_instance = a_cache_at(&redis_url(), &prefix, ttl);
    let (account_id, id) = (AccountId::generate(), TicketId::generate());
    let client = redis::Client::open(redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = cut_off.entry_key(account_id, id);

    proxy.cut();
    cut_off
        .store(&ticket_at(account_id, id, 2, "kept while cut off"))
        .await;
    other_instance
        .store(&ticket_at(account_id, id, 3, "written after it"))
        .await;
    wait_until("the newer entry has expired", PATIENCE, || {
        let (mut redis, key) = (redis.clone(), key.clone());
        async move { !redis.exists::<_, bool>(&key).await.unwrap() }
    })
    .await;
    proxy.restore();
    // Past the cache's pause after the failure (1 ms here), so that it asks Redis again.
    tokio::time::sleep(Duration::from_millis(20)).await;

    // The next operation repairs first.
    assert!(matches!(
        cut_off.get(account_id, id, None).await,
        Cached::Unknown
    ));
    assert!(
        !redis.exists::<_, bool>(&key).await.unwrap(),
        "the older version came back"
    );
}

/// A ticket of `account_id` at `version`, as the service would cache it.
fn ticket_at(account_id: AccountId, id: TicketId, version: i64, subject: &str) -> Ticket {
    Ticket {
        id,
        account_id,
        subject: TicketSubject::parse(subject).unwrap(),
        description: TicketDescription::parse("The cache's own test.").unwrap(),
        priority: TicketPriority::Normal,
        status: TicketStatus::Open,
        requester_id: UserId::generate(),
        requester_email: Email::parse("requester@example.com").unwrap(),
        assignee_id: None,
        tags: Default::default(),
        group_id: None,
        custom_fields: Default::default(),
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
        version,
    }
}

#[tokio::test]
async fn a_cache_update_its_caller_stops_waiting_for_is_kept_and_reaches_redis_once_it_answers() {
    let proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let cache = a_cache_through(&proxy);
    let account_id = AccountId::generate();
    let (read_one, other) = (TicketId::generate(), TicketId::generate());
    let client = redis::Client::open(redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let mut cached_version = async |id| {
        let raw: Vec<u8> = redis.get(cache.entry_key(account_id, id)).await.unwrap();
        read_entry(&raw).expect("an entry").0
    };
    cache
        .store(&ticket_at(account_id, read_one, 1, "before"))
        .await;
    assert_eq!(cached_version(read_one).await, 1);

    // A write made while Redis was cut off is kept for repair...
    proxy.cut();
    cache
        .store(&ticket_at(account_id, other, 1, "while cut off"))
        .await;
    proxy.restore();
    // Past the cache's pause after that failure (1 ms here), so that it asks Redis again.
    tokio::time::sleep(Duration::from_millis(20)).await;
    // ...and Redis then takes connections but answers nothing. A committed write's update is
    // cut off by its caller (a deadline, a client gone) during the repair it runs first.
    proxy.stall();
    let cut_off = Duration::from_millis(300);
    let updated = tokio::time::timeout(
        cut_off,
        cache.store(&ticket_at(account_id, read_one, 2, "after")),
    )
    .await;
    assert!(updated.is_err(), "cut off");
    proxy.unstall();

    // The next read repairs first: both writes reach Redis, and the read sees the newer one.
    let Cached::Ticket(read) = cache.get(account_id, read_one, None).await else {
        panic!("the repaired entry is read");
    };
    assert_eq!((read.version, read.subject.as_str()), (2, "after"));
    assert_eq!(cached_version(read_one).await, 2);
    assert_eq!(cached_version(other).await, 1);
}

#[tokio::test]
async fn while_redis_is_away_only_writes_are_kept_for_repair_not_what_reads_found() {
    let proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let cache = a_cache_through(&proxy);
    let account_id = AccountId::generate();
    let (read, written) = (TicketId::generate(), TicketId::generate());

    proxy.cut();
    cache.fill(&ticket_at(account_id, read, 3, "read")).await;
    cache
        .store(&ticket_at(account_id, written, 4, "written"))
        .await;
    proxy.restore();
    // Past the cache's pause after those failures (1 ms here), so that it asks Redis again.
    tokio::time::sleep(Duration::from_millis(20)).await;

    // The next operation repairs: the write reaches Redis, the read's fill does not.
    assert!(matches!(
        cache.get(account_id, written, None).await,
        Cached::Ticket(ticket) if ticket.version == 4
    ));
    assert!(matches!(
        cache.get(account_id, read, None).await,
        Cached::Unknown
    ));
}

/// What an error's trailers weigh as HTTP/2 counts a header list (name + value + 32 bytes a
/// field): grpc-status, grpc-message as sent (percent-encoded), grpc-status-details-bin (base64
/// without padding) and every other field the answer carried.
fn trailer_bytes(status: &tonic::Status) -> usize {
    let encoded_message: usize = status
        .message()
        .bytes()
        .map(|byte| {
            if (0x20..0x7f).contains(&byte) && byte != b'%' {
                1
            } else {
                3
            }
        })
        .sum();
    let details = status.details().len().div_ceil(3) * 4;
    let others: usize = status
        .metadata()
        .as_ref()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    ("grpc-status".len() + 2 + 32)
        + ("grpc-message".len() + encoded_message + 32)
        + ("grpc-status-details-bin".len() + details + 32)
        + others
}

/// What a grpcio client on its default settings (an 8 KiB metadata limit) makes of ListTickets
/// with `request` (encoded) at `address`: `OK` or the status code's name.
fn grpcio_list_tickets(address: &str, token: &str, request: &[u8]) -> String {
    const CALL: &str = r#"
import sys
import grpc
channel = grpc.insecure_channel(sys.argv[1])
list_tickets = channel.unary_unary("/supportdesk.v1.TicketService/ListTickets")
try:
    list_tickets(bytes.fromhex(sys.argv[3]), metadata=(("authorization", "Bearer " + sys.argv[2]),), timeout=20)
    print("OK")
except grpc.RpcError as error:
    print(error.code().name)
"#;
    let output = std::process::Command::new(crate::support::tool("OTLP_PYTHON_BIN"))
        .args(["-c", CALL, address, token, &hex::encode(request)])
        .output()
        .expect("run the grpcio client");
    assert!(
        output.status.success(),
        "the grpcio client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

/// Issue 67, item 19: a list filter of hundreds of refused values used to be answered with a
/// BadRequest naming each one (33 KB of trailers for 300), which Envoy reset and retried on every
/// instance (503 BACKEND_UNAVAILABLE, and other callers' requests failing with it) and grpcio
/// refused as RESOURCE_EXHAUSTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_refused_filter_values_are_one_small_400_through_envoy_and_other_callers_never_notice()
 {
    use crate::support::fleet::Fleet;
    use supportdesk::errors::Reason;
    use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;

    let fleet = Fleet::start(3, 3, None).await;
    let token = fleet.admin().access_token.clone();
    let ticket = TicketServiceClient::new(fleet.envoy_channel())
        .create_ticket(fleet.admin().request(valid_create_request("unrelated")))
        .await
        .expect("a ticket")
        .into_inner();
    let http = reqwest::Client::new();
    let retries_before = fleet
        .envoy
        .stat("cluster.supportdesk.upstream_rq_retry")
        .await;
    let resets_before = fleet
        .envoy
        .stat("cluster.supportdesk.upstream_cx_destroy_with_active_rq")
        .await;

    // An unrelated caller reads its ticket through the same Envoy the whole time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = tokio::spawn({
        let (stop, http, token) = (stop.clone(), http.clone(), token.clone());
        let url = fleet.envoy.url(&format!("/v1/tickets/{}", ticket.id));
        async move {
            let (mut answered, mut failed) = (0_u32, Vec::new());
            while !std::sync::atomic::AtomicBool::load(&stop, std::sync::atomic::Ordering::Relaxed)
                || answered == 0
            {
                match http.get(&url).bearer_auth(&token).send().await {
                    Ok(response) if response.status() == reqwest::StatusCode::OK => answered += 1,
                    Ok(response) => failed.push(format!(
                        "{} {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    )),
                    Err(error) => failed.push(error.to_string()),
                }
            }
            (answered, failed)
        }
    });

    let fields_of = |body: &serde_json::Value| -> Vec<String> {
        body["details"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|detail| detail["@type"] == "type.googleapis.com/google.rpc.BadRequest")
            .flat_map(|detail| {
                detail["fieldViolations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|violation| violation["field"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // 300 and 700 values (10.5 and 24.5 KB of query, under the 32 KiB request-line limit).
    for count in [300, 700] {
        let query = vec!["statuses=TICKET_STATUS_UNSPECIFIED"; count].join("&");
        let response = http
            .get(fleet.envoy.url(&format!("/v1/tickets?{query}")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("an answer");
        let status = response.status();
        let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap())
            .unwrap_or(serde_json::Value::Null);
        assert_eq!(
            status,
            reqwest::StatusCode::BAD_REQUEST,
            "{count} values: {body}"
        );
        crate::support::assert_json_reason(&body, Reason::InvalidArgument);
        assert_eq!(fields_of(&body), ["statuses"], "{count} values: {body}");
    }

    // Within the lists' bound, a request refused for more than one error names: the first 20
    // violations, every refused field among them, and how many more there are.
    let query = [
        vec!["statuses=TICKET_STATUS_UNSPECIFIED"; 32],
        vec!["priorities=TICKET_PRIORITY_UNSPECIFIED"; 32],
        vec![
            "assigneeId=x",
            "requesterId=y",
            "orderBy=colour",
            "readMask=colour",
            "pageSize=-1",
        ],
    ]
    .concat()
    .join("&");
    let response = http
        .get(fleet.envoy.url(&format!("/v1/tickets?{query}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.expect("the error JSON");
    crate::support::assert_json_reason(&body, Reason::InvalidArgument);
    let mut expected: Vec<String> = (0..14).map(|index| format!("statuses[{index}]")).collect();
    expected.extend(
        [
            "priorities[0]",
            "assigneeId",
            "requesterId",
            "orderBy",
            "readMask",
            "pageSize",
        ]
        .map(str::to_owned),
    );
    assert_eq!(fields_of(&body), expected, "{body}");
    let info = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        .unwrap();
    assert_eq!(info["metadata"]["more_violations"], "49", "{body}");
    assert!(
        body["message"].as_str().unwrap().ends_with("(and 49 more)"),
        "{body}"
    );

    // Over gRPC, straight to an instance: 10,000 values, one violation, small trailers.
    let mut direct = TicketServiceClient::new(fleet.direct_channel(0).await);
    let hostile = v1::ListTicketsRequest {
        statuses: vec![0; 10_000],
        ..Default::default()
    };
    let status = direct
        .list_tickets(fleet.admin().request(hostile.clone()))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), ["statuses"]);
    let many = v1::ListTicketsRequest {
        statuses: vec![0; 32],
        priorities: vec![0; 32],
        assignee_id: "x".repeat(4096),
        requester_id: "\u{202e}".repeat(2048),
        order_by: "colour".repeat(1000),
        read_mask: Some(prost_types::FieldMask {
            paths: vec!["c".repeat(4096)],
        }),
        page_size: -1,
        ..Default::default()
    };
    let status = direct
        .list_tickets(fleet.admin().request(many.clone()))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // At most 20 named, within their byte budget; the rest counted.
    let named = violated_fields(&status).len();
    let more: usize = crate::support::details(&status)
        .error_info()
        .and_then(|info| info.metadata.get("more_violations").cloned())
        .map_or(0, |more| more.parse().expect("a count"));
    assert!((1..=20).contains(&named), "{status:?}");
    assert_eq!(named + more, 69, "{status:?}");
    assert!(
        trailer_bytes(&status) < 8 * 1024,
        "{} bytes of trailers",
        trailer_bytes(&status)
    );
    // A grpcio client on its default settings reads both answers.
    let address = format!("127.0.0.1:{}", fleet.ports[0]);
    for request in [&hostile, &many] {
        assert_eq!(
            grpcio_list_tickets(&address, &token, &prost::Message::encode_to_vec(request)),
            "INVALID_ARGUMENT"
        );
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, failed) = reader.await.expect("the reader");
    assert!(
        failed.is_empty(),
        "the unrelated caller's reads failed ({answered} answered): {failed:?}"
    );
    assert_eq!(
        fleet
            .envoy
            .stat("cluster.supportdesk.upstream_rq_retry")
            .await,
        retries_before,
        "Envoy retried a refusal"
    );
    assert_eq!(
        fleet
            .envoy
            .stat("cluster.supportdesk.upstream_cx_destroy_with_active_rq")
            .await,
        resets_before,
        "Envoy tore down upstream connections"
    );
    assert!(fleet.panics().is_empty(), "{:?}", fleet.panics());
}
