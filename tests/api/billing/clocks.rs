//! Billing on an instance whose clock is wrong (docs/billing.md, "One clock"): the binary run with
//! its clock two hours behind (Debian's libfaketime preloaded into it alone,
//! [`Running::start_with_clock`](crate::support::binary::Running::start_with_clock)) judges a
//! charge's age and the completer's due rows by PostgreSQL's clock, which wrote them, never its
//! own. Checked in PostgreSQL and in the simulator's request log and ledger.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use payment_simulator::{Endpoint, FaultAction, FaultRule};
use supportdesk::db::schema::charges;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;

use super::crashes::{Deployment, Launch};
use crate::support::assert_reason;

/// Two hours behind PostgreSQL's clock, as an instance whose NTP is broken.
const LAGGING: Option<&str> = Some("-2h");

/// The provider makes every payment but answers 500, which it saves under the key and replays to
/// every resend; answers the fault's id.
fn made_but_answered_500(desk: &Deployment) -> u64 {
    desk.simulator
        .add_fault(FaultRule::always(
            Endpoint::CreatePaymentIntent,
            FaultAction::ExecuteThenServerError { status: 500 },
        ))
        .unwrap()
        .id
}

fn payment_intents_posted(desk: &Deployment) -> usize {
    desk.simulator
        .requests()
        .into_iter()
        .filter(|request| request.method == "POST" && request.path == "/v1/payment_intents")
        .count()
}

/// A charge the provider made 25 hours ago but answered with a 500 is still pending. A client's
/// retry reaches an instance whose clock lags two hours: by its own clock the charge is 23 hours
/// old, inside the provider's 24 h key retention, and sending it again under a key the provider
/// may have forgotten would pay it twice. By PostgreSQL's clock it is 25 hours old: the payment
/// is looked for, found and recorded, and nothing is sent again.
#[tokio::test]
async fn a_retry_on_an_instance_whose_clock_lags_looks_for_a_day_old_pending_charge_instead_of_sending_it_again()
 {
    let desk = Deployment::open_with(Launch {
        settings: &[
            ("PAYMENT_PROVIDER_MAX_ATTEMPTS", "1"),
            ("BILLING_COMPLETER_INTERVAL_MS", "3600000"),
        ],
        clock_shift: LAGGING,
    })
    .await;
    let fault = made_but_answered_500(&desk);
    let status = desk
        .charge_again(1_200, "a-day-later")
        .await
        .expect_err("the provider answered 500");
    assert_reason(&status, Reason::PaymentProviderUnavailable);
    desk.simulator.remove_fault(fault);
    assert_eq!(desk.simulator.ledger().payment_intents.len(), 1, "paid");
    let (id, state, _, _) = desk.only_charge().await;
    assert_eq!(state, "pending");
    let mut conn = desk.database.connect().await;
    diesel::sql_query("UPDATE charges SET created_at = created_at - interval '25 hours'")
        .execute(&mut conn)
        .await
        .unwrap();

    let answered = desk.charge_again(1_200, "a-day-later").await;

    assert_eq!(payment_intents_posted(&desk), 1, "nothing sent again");
    let answered = answered.expect("found at the provider");
    assert_eq!(answered.status(), v1::ChargeStatus::Succeeded);
    let ledger = desk.simulator.ledger();
    assert_eq!(ledger.payment_intents.len(), 1);
    assert_eq!(answered.provider_payment_id, ledger.payment_intents[0].id);
    let stored: (String, Option<String>) = charges::table
        .find(id)
        .select((charges::status, charges::provider_payment_id))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        stored,
        (
            "succeeded".to_owned(),
            Some(ledger.payment_intents[0].id.clone())
        )
    );
}

/// A charge whose answer was lost is left pending, due at once by PostgreSQL's clock. The
/// completer of an instance whose clock lags two hours takes the rows due by the start of its
/// run: by its own clock, nothing would be due for two hours. It settles the charge with the
/// one payment the provider made.
#[tokio::test]
async fn the_completer_of_an_instance_whose_clock_lags_settles_a_charge_left_pending_now() {
    let desk = Deployment::open_with(Launch {
        settings: &[("PAYMENT_PROVIDER_MAX_ATTEMPTS", "1")],
        clock_shift: LAGGING,
    })
    .await;
    desk.simulator
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::ExecuteThenServerError { status: 500 },
            1,
        ))
        .unwrap();
    let status = desk
        .charge_again(1_500, "left-pending")
        .await
        .expect_err("the provider answered 500");
    assert_reason(&status, Reason::PaymentProviderUnavailable);

    desk.wait_until_everything_is_final().await;

    let (id, state, _, payment) = desk.only_charge().await;
    assert_eq!(state, "succeeded");
    let ledger = desk.simulator.ledger();
    assert_eq!(ledger.payment_intents.len(), 1);
    assert_eq!(
        payment.as_deref(),
        Some(ledger.payment_intents[0].id.as_str())
    );
    assert_eq!(desk.payments_at_provider(id), 1);
    assert_eq!(desk.actions(id).await, ["created", "succeeded"]);
}

/// Two hours ahead of PostgreSQL's clock.
const AHEAD: Option<&str> = Some("+2h");

/// A charge whose answer was lost a moment ago is pending, younger than the reconciler's settle
/// time (10 minutes): the request path and the completer are still working on it. The reconciler
/// of an instance whose clock runs two hours ahead judges that age by PostgreSQL's clock, which
/// wrote the charge, and leaves it: by its own clock the charge would be two hours old, and the
/// run would settle it under the request path's feet.
#[tokio::test]
async fn the_reconciler_of_an_instance_whose_clock_runs_ahead_leaves_a_charge_younger_than_its_settle_time()
 {
    let desk = Deployment::open_with(Launch {
        settings: &[
            ("PAYMENT_PROVIDER_MAX_ATTEMPTS", "1"),
            ("BILLING_COMPLETER_INTERVAL_MS", "3600000"),
            ("BILLING_RECONCILIATION_INTERVAL_MS", "200"),
        ],
        clock_shift: AHEAD,
    })
    .await;
    made_but_answered_500(&desk);
    let status = desk
        .charge_again(1_300, "just-now")
        .await
        .expect_err("the provider answered 500");
    assert_reason(&status, Reason::PaymentProviderUnavailable);
    let (id, state, _, _) = desk.only_charge().await;
    assert_eq!(state, "pending");

    crate::support::wait_until(
        "two reconciliation runs completed after the charge was made",
        crate::support::PATIENCE,
        || async {
            crate::support::count_of(
                &desk.database,
                "SELECT count(*) AS count FROM reconciliation_runs r \
                 WHERE r.status = 'completed' \
                   AND r.started_at > (SELECT created_at FROM charges)",
            )
            .await
                >= 2
        },
    )
    .await;

    assert_eq!(
        crate::support::count_of(
            &desk.database,
            "SELECT coalesce(sum(charges_checked), 0)::bigint AS count FROM reconciliation_runs",
        )
        .await,
        0,
        "no run compared the young charge"
    );
    assert_eq!(desk.only_charge().await.1, "pending");
    assert_eq!(desk.actions(id).await, ["created"]);
}
