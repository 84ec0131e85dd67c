//! SearchTickets: words found in subject, description and public comments, ranked, with marked
//! snippets; internal notes never searched; a customer's search finds only their own tickets and
//! no search finds another account's.

use diesel_async::RunQueryDsl;
use supportdesk::domain::MAX_MATCHES_RANKED;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::{TestApp, TestUser, count_of, violated_fields};

async fn create(app: &TestApp, subject: &str, description: &str) -> v1::Ticket {
    app.ticket(subject).description(description).create().await
}

async fn comment(app: &TestApp, ticket: &v1::Ticket, body: &str, public: bool) {
    let comment = app.comment(&ticket.id, body);
    let comment = if public { comment.public() } else { comment };
    comment.try_add().await.expect("commented");
}

async fn search(app: &TestApp, caller: &TestUser, q: &str) -> Vec<v1::TicketSearchResult> {
    let response = app
        .tickets
        .clone()
        .search_tickets(caller.request(v1::SearchTicketsRequest {
            q: q.to_owned(),
            page_size: 100,
            ..Default::default()
        }))
        .await
        .expect("searched")
        .into_inner();
    assert_eq!(response.order(), v1::SearchOrder::Relevance, "{q}");
    response.results
}

fn ids(results: &[v1::TicketSearchResult]) -> Vec<String> {
    results
        .iter()
        .map(|result| result.ticket.as_ref().expect("a ticket").id.clone())
        .collect()
}

#[tokio::test]
async fn words_are_found_in_subject_description_and_public_comments_best_match_first() {
    let app = TestApp::spawn().await;
    let in_subject = create(&app, "Printer jams on page two", "Nothing else to say.").await;
    let in_description = create(&app, "Office trouble", "The printer jams every morning.").await;
    let in_comment = create(&app, "Kitchen", "The coffee machine leaks.").await;
    comment(
        &app,
        &in_comment,
        "Also, the printer next to it jams.",
        true,
    )
    .await;
    create(&app, "Unrelated", "The door squeaks.").await;

    let results = search(&app, &app.admin, "printers jamming").await;
    assert_eq!(
        ids(&results),
        [in_subject.id, in_description.id, in_comment.id],
        "subject over description over comments"
    );
    let relevance: Vec<f32> = results.iter().map(|result| result.relevance).collect();
    assert!(
        relevance.windows(2).all(|pair| pair[0] > pair[1]),
        "{relevance:?}"
    );
    assert!(
        results[0].snippet.contains("<mark>Printer</mark>")
            && results[0].snippet.contains("<mark>jams</mark>"),
        "{}",
        results[0].snippet
    );
    assert!(
        results[2].snippet.contains("<mark>printer</mark>"),
        "{}",
        results[2].snippet
    );

    // Combined with the filters: none of them is urgent.
    let filtered = app
        .tickets
        .clone()
        .search_tickets(app.as_admin(v1::SearchTicketsRequest {
            q: "printer".to_owned(),
            priorities: vec![v1::TicketPriority::Urgent.into()],
            ..Default::default()
        }))
        .await
        .expect("searched")
        .into_inner();
    assert!(filtered.results.is_empty());

    // Paged: one at a time, the same order.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .tickets
            .clone()
            .search_tickets(app.as_admin(v1::SearchTicketsRequest {
                q: "printers jamming".to_owned(),
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .expect("a page")
            .into_inner();
        paged.extend(ids(&page.results));
        assert_eq!(page.order(), v1::SearchOrder::Relevance);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, ids(&results));
}

#[tokio::test]
async fn snippets_escape_the_ticket_text_and_mark_only_matches() {
    let app = TestApp::spawn().await;
    create(
        &app,
        "<script>alert(1)</script> router",
        "Speed: router < 5 & modem > 3",
    )
    .await;
    let results = search(&app, &app.admin, "router").await;
    assert_eq!(results.len(), 1);
    let snippet = &results[0].snippet;
    assert!(snippet.contains("&lt; 5 &amp; modem"), "{snippet}");
    assert!(!snippet.contains("<script>"), "{snippet}");
    assert!(snippet.contains("<mark>router</mark>"), "{snippet}");
}

#[tokio::test]
async fn internal_notes_are_never_searched_and_customers_find_only_their_own_tickets() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let own = app
        .ticket("Invoice question")
        .description("Where is my invoice?")
        .requester("")
        .by(&customer)
        .try_create()
        .await
        .expect("raised");
    comment(
        &app,
        &own,
        "Internal: customer is on the zebrafish plan",
        false,
    )
    .await;
    let someone_elses = create(&app, "Invoice missing", "Another customer's invoice.").await;

    assert!(search(&app, &customer, "zebrafish").await.is_empty());
    assert!(
        search(&app, &app.admin, "zebrafish").await.is_empty(),
        "internal notes are not indexed for anyone"
    );
    let found = ids(&search(&app, &customer, "invoice").await);
    assert_eq!(found, vec![own.id.clone()]);
    let mut everyone = ids(&search(&app, &app.admin, "invoice").await);
    everyone.sort();
    let mut expected = vec![own.id, someone_elses.id];
    expected.sort();
    assert_eq!(everyone, expected);

    let other = app.sign_up_another_account().await;
    assert!(search(&app, &other, "invoice").await.is_empty());

    let refused = app
        .tickets
        .clone()
        .search_tickets(app.as_admin(v1::SearchTicketsRequest {
            q: "   ".to_owned(),
            ..Default::default()
        }))
        .await
        .expect_err("no words");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["q"]);
}

#[tokio::test]
async fn words_matching_more_tickets_than_can_be_ranked_in_time_find_the_newest_first_on_every_page()
 {
    let app = TestApp::spawn().await;
    let ranked_in_time = create(&app, "Stapler jams", "The stapler jams daily.").await;
    // More tickets than a search ranks, written straight into the table (the API would take
    // minutes), a minute apart, each naming a "router"; then the statistics the planner
    // estimates matches from, as autovacuum would gather them.
    let mut conn = app.database.connect().await;
    diesel::sql_query(format!(
        "INSERT INTO tickets (id, account_id, subject, description, priority, status, \
         requester_id, created_at, updated_at) \
         SELECT gen_random_uuid(), '{account}', 'Router ' || n, 'The router drops the line.', \
         'normal', 'new', '{admin}', now() - n * interval '1 minute', now() \
         FROM generate_series(1, {count}) AS n",
        account = app.account_id.as_uuid(),
        admin = app.admin.id.as_uuid(),
        count = MAX_MATCHES_RANKED * 2,
    ))
    .execute(&mut conn)
    .await
    .expect("inserted");
    diesel::sql_query("ANALYZE tickets")
        .execute(&mut conn)
        .await
        .expect("analyzed");
    let newest_first = count_of(
        &app.database,
        &format!(
            "SELECT count(*) AS count FROM tickets WHERE account_id = '{}' \
             AND subject LIKE 'Router %'",
            app.account_id.as_uuid()
        ),
    )
    .await;
    assert_eq!(newest_first, MAX_MATCHES_RANKED * 2);

    // Three pages of 50 routers: newest first throughout, by the tickets' creation times.
    let mut subjects = Vec::new();
    let mut token = String::new();
    for _ in 0..3 {
        let page = app
            .tickets
            .clone()
            .search_tickets(app.as_admin(v1::SearchTicketsRequest {
                q: "routers".to_owned(),
                page_size: 50,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .expect("a page")
            .into_inner();
        assert_eq!(page.order(), v1::SearchOrder::Newest);
        assert!(page.results.iter().all(|result| {
            result.snippet.contains("<mark>Router</mark>") && result.relevance > 0.0
        }));
        subjects.extend(
            page.results
                .iter()
                .map(|result| result.ticket.as_ref().expect("a ticket").subject.clone()),
        );
        token = page.next_page_token;
    }
    let expected: Vec<String> = (1..=150).map(|n| format!("Router {n}")).collect();
    assert_eq!(subjects, expected);

    // Words that match few tickets are still ranked, in the same account.
    let stapler = search(&app, &app.admin, "stapler").await;
    assert_eq!(ids(&stapler), [ranked_in_time.id]);
}
