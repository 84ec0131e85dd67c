//! A panel held on a lock degrades alone: GetDashboard answers within its deadline with that
//! panel DEADLINE_EXCEEDED (and its query cancelled in PostgreSQL) and the others OK.

use diesel_async::RunQueryDsl;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::{PATIENCE, TestApp, backends_waiting_on_locks, wait_until};

#[tokio::test]
async fn a_revenue_panel_held_on_a_lock_is_deadline_exceeded_while_the_other_panels_answer() {
    let app = TestApp::spawn().await;
    app.create_ticket("still answered").await;
    // Held until the test ends: without per-panel timeouts the call would wait as long.
    let mut holder = app.database.connect().await;
    diesel::sql_query("BEGIN")
        .execute(&mut holder)
        .await
        .unwrap();
    diesel::sql_query("LOCK TABLE revenue_daily IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();

    let answered = tokio::time::timeout(
        PATIENCE,
        app.dashboard
            .clone()
            .get_dashboard(app.as_admin(v1::GetDashboardRequest::default())),
    )
    .await
    .expect("GetDashboard answers while a panel is held")
    .expect("GetDashboard never fails because one panel did")
    .into_inner();
    let revenue = answered.revenue.unwrap();
    let status = revenue.status.unwrap();
    assert_eq!(status.code, Code::DeadlineExceeded as i32);
    let info = status
        .details
        .iter()
        .find(|detail| detail.type_url.ends_with("google.rpc.ErrorInfo"))
        .expect("an ErrorInfo");
    let info = <supportdesk::wire::proto::google::rpc::ErrorInfo as prost::Message>::decode(
        info.value.as_slice(),
    )
    .unwrap();
    assert_eq!(info.reason, Reason::DeadlineExceeded.as_str());
    assert_eq!(revenue.revenue, None);
    let stats = answered.ticket_stats.unwrap();
    assert_eq!(stats.status.unwrap().code, 0);
    assert_eq!(stats.ticket_stats.unwrap().daily[0].created, 1);
    let activity = answered.recent_activity.unwrap();
    assert_eq!(activity.status.unwrap().code, 0);
    assert_eq!(activity.recent_activity.unwrap().records.len(), 1);
    // PostgreSQL itself cancelled the held query: nothing of the service waits on the lock.
    wait_until("the held panel's query is cancelled", PATIENCE, || async {
        backends_waiting_on_locks(&app.database).await == 0
    })
    .await;

    // The panel on its own answers DEADLINE_EXCEEDED too.
    let alone = app
        .dashboard
        .clone()
        .get_revenue(app.as_admin(v1::GetRevenueRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(alone.code(), Code::DeadlineExceeded);
    drop(holder);
}
