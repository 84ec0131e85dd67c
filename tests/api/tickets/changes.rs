//! ListTicketChanges, the change feed: under eight concurrent writers and a transaction that
//! commits last while holding the oldest transaction id, the reader never skips or repeats a
//! change; cursors belong to their account.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::{PATIENCE, TestApp, TestUser, violated_fields, with_token};

/// A change as the feed reported it: the ticket, its version, and whether it was deleted.
type Seen = (String, i64, bool);

fn version(ticket: &v1::Ticket) -> i64 {
    ticket
        .etag
        .trim_start_matches('v')
        .parse()
        .expect("an etag of the form v<version>")
}

/// A reader of the feed that remembers its cursor and everything it was given, in order.
struct Reader {
    cursor: String,
    seen: Vec<Seen>,
}

impl Reader {
    fn new() -> Self {
        Self {
            cursor: String::new(),
            seen: Vec::new(),
        }
    }

    /// Reads pages until the feed says it has caught up.
    async fn catch_up(&mut self, app: &TestApp, reader: &TestUser) {
        loop {
            let page = app
                .tickets
                .clone()
                .list_ticket_changes(reader.request(v1::ListTicketChangesRequest {
                    cursor: self.cursor.clone(),
                    page_size: 7,
                    ..Default::default()
                }))
                .await
                .expect("a page of changes")
                .into_inner();
            for change in &page.changes {
                let ticket = change.ticket.as_ref().expect("the ticket");
                self.seen
                    .push((ticket.id.clone(), version(ticket), change.deleted));
            }
            assert!(!page.next_cursor.is_empty(), "a cursor to resume from");
            self.cursor = page.next_cursor;
            if page.caught_up {
                return;
            }
        }
    }
}

/// Every ticket of the account with its current version, read where it lives.
async fn current_versions(app: &TestApp) -> HashMap<String, i64> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = BigInt)]
        version: i64,
    }
    let mut conn = app.database.connect().await;
    let rows: Vec<Row> =
        diesel::sql_query("SELECT id::text AS id, version FROM tickets WHERE account_id = $1")
            .bind::<SqlUuid, _>(app.account_id.as_uuid())
            .load(&mut conn)
            .await
            .expect("the tickets");
    rows.into_iter().map(|row| (row.id, row.version)).collect()
}

/// One writer's work: tickets created, changed, commented on, and one deleted.
async fn write(
    app_tickets: v1::ticket_service_client::TicketServiceClient<tonic::transport::Channel>,
    token: String,
    writer: usize,
) {
    let mut tickets = app_tickets;
    let mut last = String::new();
    for n in 0..3 {
        let created = tickets
            .create_ticket(with_token(
                &token,
                crate::support::valid_create_request(&format!("writer {writer} ticket {n}")),
            ))
            .await
            .expect("created")
            .into_inner();
        tickets
            .update_ticket(with_token(
                &token,
                v1::UpdateTicketRequest {
                    ticket: Some(v1::Ticket {
                        id: created.id.clone(),
                        subject: format!("writer {writer} ticket {n}, renamed"),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["subject".to_owned()],
                    }),
                },
            ))
            .await
            .expect("renamed");
        tickets
            .add_comment(with_token(
                &token,
                v1::AddCommentRequest {
                    ticket_id: created.id.clone(),
                    comment: Some(v1::Comment {
                        body: format!("note {n}"),
                        public: n % 2 == 0,
                        ..Default::default()
                    }),
                },
            ))
            .await
            .expect("commented");
        last = created.id;
    }
    tickets
        .delete_ticket(with_token(
            &token,
            v1::DeleteTicketRequest {
                id: last,
                etag: String::new(),
            },
        ))
        .await
        .expect("deleted");
}

#[tokio::test]
async fn the_change_feed_under_eight_concurrent_writers_never_skips_or_repeats_a_change() {
    let app = TestApp::spawn().await;
    let mut initial = HashSet::new();
    for n in 0..4 {
        initial.insert(app.create_ticket(&format!("initial {n}")).await.id);
    }
    let late_ticket = initial.iter().next().expect("a ticket").clone();

    // The late transaction takes its transaction id before any writer, changes a ticket, and
    // commits after all of them: with a sequence taken at write time, its change would sort
    // before changes a reader has already passed.
    let mut late = app.database.connect().await;
    diesel::sql_query("BEGIN").execute(&mut late).await.unwrap();
    diesel::sql_query(
        "UPDATE tickets SET subject = 'changed late', version = version + 1 WHERE id = $1::uuid",
    )
    .bind::<Text, _>(&late_ticket)
    .execute(&mut late)
    .await
    .expect("the late change");

    let mut reader = Reader::new();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            tokio::spawn(write(
                app.tickets.clone(),
                app.admin.access_token.clone(),
                writer,
            ))
        })
        .collect();
    // Read while they write.
    while !writers.iter().all(tokio::task::JoinHandle::is_finished) {
        reader.catch_up(&app, &app.admin).await;
    }
    for writer in writers {
        writer.await.expect("the writer finished");
    }
    reader.catch_up(&app, &app.admin).await;
    let seen_while_late_was_open: HashSet<&String> =
        reader.seen.iter().map(|(id, _, _)| id).collect();
    assert!(
        seen_while_late_was_open
            .iter()
            .all(|id| initial.contains(*id)),
        "a change committed after the late transaction began was given before it committed"
    );

    diesel::sql_query("COMMIT")
        .execute(&mut late)
        .await
        .unwrap();
    let current = current_versions(&app).await;
    assert_eq!(current.len(), 4 + 8 * 3);
    // Other transactions of the PostgreSQL server (other tests' included) may hold the feed
    // back for a while; they never make it skip.
    let started = tokio::time::Instant::now();
    loop {
        reader.catch_up(&app, &app.admin).await;
        let delivered = current.iter().all(|(id, version)| {
            reader
                .seen
                .iter()
                .any(|(seen, at, _)| seen == id && at == version)
        });
        if delivered {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the feed did not deliver every ticket's latest change within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut distinct = HashSet::new();
    for (id, version, _) in &reader.seen {
        assert!(
            distinct.insert((id.clone(), *version)),
            "the change {id} v{version} was given twice"
        );
    }
    let mut last_version: HashMap<&str, i64> = HashMap::new();
    for (id, version, _) in &reader.seen {
        if let Some(previous) = last_version.insert(id, *version) {
            assert!(
                previous < *version,
                "{id} went back from v{previous} to v{version}"
            );
        }
    }
    let deleted: HashSet<&str> = reader
        .seen
        .iter()
        .filter(|(_, _, deleted)| *deleted)
        .map(|(id, _, _)| id.as_str())
        .collect();
    assert_eq!(deleted.len(), 8, "each writer's deleted ticket, as deleted");
    assert!(
        reader
            .seen
            .iter()
            .any(|(id, version, _)| *id == late_ticket && *version == 2),
        "the late change was given once it committed"
    );
}

#[tokio::test]
async fn a_cursor_belongs_to_its_account_and_customers_have_no_feed() {
    let app = TestApp::spawn().await;
    app.create_ticket("one").await;
    // Other transactions of the PostgreSQL server may hold the feed back for a moment.
    let started = tokio::time::Instant::now();
    let page = loop {
        let page = app
            .tickets
            .clone()
            .list_ticket_changes(app.as_admin(v1::ListTicketChangesRequest::default()))
            .await
            .expect("the feed")
            .into_inner();
        if !page.changes.is_empty() {
            break page;
        }
        assert!(started.elapsed() < PATIENCE, "the feed gave nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(page.changes.len(), 1);
    assert!(page.caught_up);

    let again = app
        .tickets
        .clone()
        .list_ticket_changes(app.as_admin(v1::ListTicketChangesRequest {
            cursor: page.next_cursor.clone(),
            page_size: 0,
            ..Default::default()
        }))
        .await
        .expect("the feed from the cursor")
        .into_inner();
    assert!(again.changes.is_empty());
    assert!(again.caught_up);

    let other = app.sign_up_another_account().await;
    let refused = app
        .tickets
        .clone()
        .list_ticket_changes(other.request(v1::ListTicketChangesRequest {
            cursor: page.next_cursor,
            page_size: 0,
            ..Default::default()
        }))
        .await
        .expect_err("another account's cursor");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["cursor"]);

    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let refused = app
        .tickets
        .clone()
        .list_ticket_changes(customer.request(v1::ListTicketChangesRequest::default()))
        .await
        .expect_err("customers have no feed");
    assert_eq!(refused.code(), Code::PermissionDenied);
}
