//! Billing's crash tests: the real binary killed with SIGKILL at each phase of a charge or a
//! refund, a fresh binary started on the same database and Redis prefix, and every charge ends
//! final with exactly one payment (or refund) in the simulator's ledger.
//!
//! No failpoint is compiled into the service. The process is held at a phase from outside and
//! observed there before the kill:
//!
//! - **inside a transaction**: a trigger installed by the test on `charge_activities` takes an
//!   advisory lock the test holds when the audit row of one action is inserted (`created` /
//!   `refund_requested` inside phase 1; `succeeded`, `failed` / `refunded` in phase 2 after the
//!   provider answered). The service's
//!   backend waits for the lock (seen in `pg_stat_activity`), it is killed, then the test lets the
//!   lock go: the orphaned backend finds its client gone and rolls back, as a backend of a killed
//!   process does at once when it is not waiting for a lock;
//! - **before the provider executes**: the binary's provider URL is a listener that accepts the
//!   request and never answers (the request never reaches the simulator);
//! - **during the provider call, after it charged**: the simulator's `execute_then_timeout`.
//!
//! After the restart the completer (`BILLING_COMPLETER_INTERVAL_MS=200`; its fixed minimum pending
//! age of 5 s is waited for by polling) finishes what was left pending, and a retry of the client's
//! request with the same idempotency key answers the final state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use payment_simulator::{
    Endpoint, FaultAction, FaultRule, Simulator, SimulatorConfig, SimulatorHandle,
};
use supportdesk::db::models::charge_activity::actions_of_charge;
use supportdesk::db::schema::{charges, refunds};
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::billing_service_client::BillingServiceClient;
use supportdesk::wire::proto::v1::user_service_client::UserServiceClient;
use tokio::io::AsyncReadExt;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::support::binary::{Running, sign_up_through};
use crate::support::{
    PATIENCE, TEST_PASSWORD, TestDatabase, TestUser, assert_reason, backends_waiting_on_locks,
    busy_backends, wait_until,
};

/// The advisory lock the test-installed trigger waits for.
const HOLD_LOCK: i64 = 13_013;

/// How long the completer may take after a restart: its 5 s minimum age, the interval, a loaded
/// machine.
const COMPLETION: Duration = Duration::from_secs(40);

/// How a deployment's binary is started, beyond [`start`]'s settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Launch {
    /// Settings that override [`start`]'s.
    pub(crate) settings: &'static [(&'static str, &'static str)],
    /// The shift of the binary's clock (libfaketime's relative offset, `"-2h"`), if any.
    pub(crate) clock_shift: Option<&'static str>,
}

impl Launch {
    const PLAIN: Self = Self {
        settings: &[],
        clock_shift: None,
    };
}

/// One deployment of the binary: its database, the simulator, the accounts made through it.
pub(crate) struct Deployment {
    pub(crate) database: TestDatabase,
    pub(crate) simulator: SimulatorHandle,
    redis_prefix: String,
    admin: TestUser,
    customer_id: String,
    launch: Launch,
    running: Option<Running>,
    channel: Channel,
}

impl Deployment {
    async fn open() -> Self {
        Self::open_with(Launch::PLAIN).await
    }

    pub(crate) async fn open_with(launch: Launch) -> Self {
        let database = TestDatabase::create().await;
        let simulator = Simulator::start(SimulatorConfig::default())
            .await
            .expect("the simulator starts");
        let redis_prefix = format!("supportdesk-test:{}:", Uuid::now_v7().simple());
        let running = start(
            &database,
            &redis_prefix,
            &simulator.base_url(),
            &simulator,
            launch,
        );
        let channel = running.channel().await;
        running.wait_for_health("Serving").await;
        let admin = sign_up_through(&channel).await;
        let customer = UserServiceClient::new(channel.clone())
            .create_user(admin.request(v1::CreateUserRequest {
                user: Some(v1::User {
                    email: format!("customer-{}@example.com", Uuid::now_v7().simple()),
                    role: v1::UserRole::Customer.into(),
                    ..Default::default()
                }),
                password: TEST_PASSWORD.to_owned(),
            }))
            .await
            .expect("the admin adds a customer")
            .into_inner();
        Self {
            database,
            simulator,
            redis_prefix,
            admin,
            customer_id: customer.id,
            launch,
            running: Some(running),
            channel,
        }
    }

    /// Kills the running binary and starts another talking to `provider_url`.
    async fn restart_with(&mut self, provider_url: &str) {
        self.running.take().expect("running").kill();
        let running = start(
            &self.database,
            &self.redis_prefix,
            provider_url,
            &self.simulator,
            self.launch,
        );
        self.channel = running.channel().await;
        running.wait_for_health("Serving").await;
        self.running = Some(running);
    }

    /// SIGKILL, nothing else: no restart yet.
    fn kill(&mut self) {
        self.running.take().expect("running").kill();
    }

    /// Starts a fresh binary on the same database, Redis prefix and simulator.
    async fn start_again(&mut self) {
        assert!(self.running.is_none(), "the first one is dead");
        let running = start(
            &self.database,
            &self.redis_prefix,
            &self.simulator.base_url(),
            &self.simulator,
            self.launch,
        );
        self.channel = running.channel().await;
        running.wait_for_health("Serving").await;
        self.running = Some(running);
    }

    pub(crate) fn billing(&self) -> BillingServiceClient<Channel> {
        BillingServiceClient::new(self.channel.clone())
    }

    pub(crate) fn create_request(
        &self,
        cents: i64,
        key: &str,
    ) -> tonic::Request<v1::CreateChargeRequest> {
        self.create_request_paying_with(cents, key, "pm_card_visa")
    }

    fn create_request_paying_with(
        &self,
        cents: i64,
        key: &str,
        payment_method: &str,
    ) -> tonic::Request<v1::CreateChargeRequest> {
        let mut request = self.admin.request(v1::CreateChargeRequest {
            charge: Some(v1::Charge {
                customer_id: self.customer_id.clone(),
                amount: Some(v1::Money {
                    amount_minor: cents,
                    currency_code: "USD".to_owned(),
                }),
                payment_method: payment_method.to_owned(),
                ..Default::default()
            }),
        });
        request
            .metadata_mut()
            .insert("idempotency-key", key.parse().unwrap());
        request
    }

    fn refund_request(
        &self,
        charge_id: &str,
        cents: i64,
        key: &str,
    ) -> tonic::Request<v1::RefundChargeRequest> {
        let mut request = self.admin.request(v1::RefundChargeRequest {
            id: charge_id.to_owned(),
            amount: Some(v1::Money {
                amount_minor: cents,
                currency_code: "USD".to_owned(),
            }),
        });
        request
            .metadata_mut()
            .insert("idempotency-key", key.parse().unwrap());
        request
    }

    /// Sends CreateCharge in the background: it never answers when the binary is killed.
    fn create_in_background(
        &self,
        cents: i64,
        key: &str,
    ) -> tokio::task::JoinHandle<Result<tonic::Response<v1::Charge>, tonic::Status>> {
        let mut billing = self.billing();
        let request = self.create_request(cents, key);
        tokio::spawn(async move { billing.create_charge(request).await })
    }

    /// Sends RefundCharge in the background: it never answers when the binary is killed.
    fn refund_in_background(
        &self,
        charge_id: &str,
        cents: i64,
        key: &str,
    ) -> tokio::task::JoinHandle<Result<tonic::Response<v1::Charge>, tonic::Status>> {
        let mut billing = self.billing();
        let request = self.refund_request(charge_id, cents, key);
        tokio::spawn(async move { billing.refund_charge(request).await })
    }

    /// CreateCharge again with `key`, as a client retries after losing its answer.
    pub(crate) async fn charge_again(
        &self,
        cents: i64,
        key: &str,
    ) -> Result<v1::Charge, tonic::Status> {
        self.billing()
            .create_charge(self.create_request(cents, key))
            .await
            .map(tonic::Response::into_inner)
    }

    /// RefundCharge again with `key`, as a client retries after losing its answer.
    async fn refund_again(
        &self,
        charge_id: &str,
        cents: i64,
        key: &str,
    ) -> Result<v1::Charge, tonic::Status> {
        self.billing()
            .refund_charge(self.refund_request(charge_id, cents, key))
            .await
            .map(tonic::Response::into_inner)
    }

    /// The provider's next payment is made but its answer never sent.
    fn provider_charges_without_answering(&self) {
        self.simulator
            .add_fault(FaultRule::new(
                Endpoint::CreatePaymentIntent,
                FaultAction::ExecuteThenTimeout {
                    hang_millis: 120_000,
                },
                1,
            ))
            .unwrap();
    }

    /// After the restart: charge `id` is the only one, ended succeeded (created, then succeeded)
    /// with the one payment the provider holds, and retrying CreateCharge with `key` answers it
    /// without paying again.
    async fn assert_paid_once_and_answered_on_retry(&self, id: Uuid, cents: i64, key: &str) {
        let (only, status, _, payment) = self.only_charge().await;
        assert_eq!((only, status.as_str()), (id, "succeeded"));
        assert_eq!(self.payments_at_provider(id), 1);
        let ledger = self.simulator.ledger();
        assert_eq!(ledger.payment_intents.len(), 1);
        assert_eq!(
            payment.as_deref(),
            Some(ledger.payment_intents[0].id.as_str())
        );
        assert_eq!(self.actions(id).await, ["created", "succeeded"]);
        let retried = self
            .charge_again(cents, key)
            .await
            .expect("the retry answers the finished charge");
        assert_eq!(retried.id, id.to_string());
        assert_eq!(retried.status, i32::from(v1::ChargeStatus::Succeeded));
        assert_eq!(self.simulator.ledger().payment_intents.len(), 1);
    }

    /// A charge paid through the running binary.
    async fn paid_charge(&self, cents: i64) -> v1::Charge {
        let charge = self
            .billing()
            .create_charge(self.create_request(cents, &Uuid::now_v7().to_string()))
            .await
            .expect("paid")
            .into_inner();
        assert_eq!(charge.status, i32::from(v1::ChargeStatus::Succeeded));
        charge
    }

    /// Every charge row: (id, status, amount refunded, the provider's payment id).
    async fn charges(&self) -> Vec<(Uuid, String, i64, Option<String>)> {
        let mut conn = self.database.connect().await;
        charges::table
            .order(charges::created_at.asc())
            .select((
                charges::id,
                charges::status,
                charges::amount_refunded_minor,
                charges::provider_payment_id,
            ))
            .load(&mut conn)
            .await
            .unwrap()
    }

    /// The one charge there is.
    pub(crate) async fn only_charge(&self) -> (Uuid, String, i64, Option<String>) {
        let mut all = self.charges().await;
        assert_eq!(all.len(), 1, "one charge row: {all:?}");
        all.remove(0)
    }

    /// Every refund row: (status, amount, the provider's refund id).
    async fn refunds(&self) -> Vec<(String, i64, Option<String>)> {
        let mut conn = self.database.connect().await;
        refunds::table
            .order(refunds::created_at.asc())
            .select((
                refunds::status,
                refunds::amount_minor,
                refunds::provider_refund_id,
            ))
            .load(&mut conn)
            .await
            .unwrap()
    }

    pub(crate) async fn actions(&self, charge_id: Uuid) -> Vec<String> {
        let mut conn = self.database.connect().await;
        actions_of_charge(&mut conn, charge_id).await.unwrap()
    }

    pub(crate) fn payments_at_provider(&self, charge_id: Uuid) -> usize {
        self.simulator
            .payment_intent_count_for_charge_id(&charge_id.to_string())
    }

    /// Polls until no charge and no refund is pending: the completer's work after a restart.
    pub(crate) async fn wait_until_everything_is_final(&self) {
        wait_until("every charge and refund final", COMPLETION, || async {
            let mut conn = self.database.connect().await;
            let pending_charges: i64 = charges::table
                .filter(charges::status.eq("pending"))
                .count()
                .get_result(&mut conn)
                .await
                .unwrap();
            let pending_refunds: i64 = refunds::table
                .filter(refunds::status.eq("pending"))
                .count()
                .get_result(&mut conn)
                .await
                .unwrap();
            pending_charges + pending_refunds == 0
        })
        .await;
    }

    /// Installs the trigger that holds the service when it writes the audit row `action` (or any
    /// of a comma-separated list), and takes the lock it waits for.
    async fn hold_at_activity(&self, action: &str) -> Hold {
        let mut conn = self.database.connect().await;
        diesel::sql_query(
            "CREATE FUNCTION crash_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF NEW.action = ANY (string_to_array(TG_ARGV[0], ',')) THEN PERFORM pg_advisory_xact_lock(TG_ARGV[1]::bigint); END IF; \
               RETURN NEW; \
             END $$",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        diesel::sql_query(format!(
            "CREATE TRIGGER crash_test_hold BEFORE INSERT ON charge_activities FOR EACH ROW \
             EXECUTE FUNCTION crash_test_hold('{action}', '{HOLD_LOCK}')"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        diesel::sql_query(format!("SELECT pg_advisory_lock({HOLD_LOCK})"))
            .execute(&mut conn)
            .await
            .unwrap();
        Hold { conn }
    }

    /// Waits until the service's backend is held by the trigger.
    async fn wait_until_held(&self) {
        self.wait_until_held_times(1).await;
    }

    /// Waits until `backends` of the service's backends are held by the trigger.
    async fn wait_until_held_times(&self, backends: i64) {
        wait_until("the service held at the audit row", PATIENCE, || async {
            backends_waiting_on_locks(&self.database).await == backends
        })
        .await;
    }

    /// After the kill: lets the orphaned backend go and waits until it has rolled back and ended
    /// (the trigger stays, harmless: nobody holds its lock any more).
    async fn release(&self, hold: Hold) {
        let Hold { mut conn } = hold;
        diesel::sql_query(format!("SELECT pg_advisory_unlock({HOLD_LOCK})"))
            .execute(&mut conn)
            .await
            .unwrap();
        drop(conn);
        wait_until(
            "the killed process's transaction rolled back",
            PATIENCE,
            || async { busy_backends(&self.database).await == 0 },
        )
        .await;
    }
}

/// The test's session holding [`HOLD_LOCK`].
struct Hold {
    conn: AsyncPgConnection,
}

fn start(
    database: &TestDatabase,
    redis_prefix: &str,
    provider_url: &str,
    simulator: &SimulatorHandle,
    launch: Launch,
) -> Running {
    let mut settings = vec![
        ("REDIS_KEY_PREFIX", redis_prefix),
        ("PAYMENT_PROVIDER_URL", provider_url),
        ("PAYMENT_PROVIDER_SECRET_KEY", simulator.api_key()),
        // One attempt held as long as the test needs; the kill comes first.
        ("PAYMENT_PROVIDER_TIMEOUT_MS", "30000"),
        ("REQUEST_TIMEOUT_MS", "30000"),
        ("BILLING_COMPLETER_INTERVAL_MS", "200"),
        ("SHUTDOWN_DELAY_MS", "0"),
    ];
    settings.extend_from_slice(launch.settings);
    Running::start_with_clock(database, &settings, launch.clock_shift)
}

/// Asserts the request killed with the binary got no answer.
async fn assert_cut_off<T: std::fmt::Debug>(
    request: tokio::task::JoinHandle<Result<tonic::Response<T>, tonic::Status>>,
) {
    let answer = request.await.expect("joined");
    assert!(answer.is_err(), "the killed binary answered: {answer:?}");
}

/// A provider that accepts connections and reads requests but never answers: what the binary
/// sent never reached the simulator. Returns its URL and everything it received.
async fn black_hole() -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                while let Ok(read @ 1..) = stream.read(&mut buffer).await {
                    sink.lock().unwrap().extend_from_slice(&buffer[..read]);
                }
            });
        }
    });
    (url, received)
}

#[tokio::test]
async fn a_charge_killed_inside_its_first_phase_leaves_nothing_and_the_retry_pays_once() {
    let mut desk = Deployment::open().await;
    let hold = desk.hold_at_activity("created").await;
    let request = desk.create_in_background(1_100, "killed-in-phase-1");
    desk.wait_until_held().await;

    desk.kill();
    assert_cut_off(request).await;
    desk.release(hold).await;
    desk.start_again().await;

    // Phase 1 never committed: no charge, no key, nothing sent.
    assert!(desk.charges().await.is_empty());
    assert!(desk.simulator.ledger().payment_intents.is_empty());
    let retried = desk
        .charge_again(1_100, "killed-in-phase-1")
        .await
        .expect("the retry charges");
    assert_eq!(retried.status, i32::from(v1::ChargeStatus::Succeeded));
    let (id, status, _, payment) = desk.only_charge().await;
    assert_eq!((id.to_string(), status.as_str()), (retried.id, "succeeded"));
    assert_eq!(
        payment.as_deref(),
        Some(retried.provider_payment_id.as_str())
    );
    assert_eq!(desk.payments_at_provider(id), 1);
    assert_eq!(desk.simulator.ledger().payment_intents.len(), 1);
    assert_eq!(desk.actions(id).await, ["created", "succeeded"]);
}

#[tokio::test]
async fn a_charge_killed_before_the_provider_received_it_is_sent_by_the_completer_once() {
    let mut desk = Deployment::open().await;
    let (unreachable, received) = black_hole().await;
    desk.restart_with(&unreachable).await;
    let request = desk.create_in_background(1_200, "killed-before-the-provider");
    wait_until(
        "the payment sent to the unanswering provider",
        PATIENCE,
        || async {
            String::from_utf8_lossy(&received.lock().unwrap()).contains("POST /v1/payment_intents")
        },
    )
    .await;
    let (id, status, _, _) = desk.only_charge().await;
    assert_eq!(status, "pending", "phase 1 committed");

    desk.kill();
    assert_cut_off(request).await;
    assert_eq!(
        desk.payments_at_provider(id),
        0,
        "nothing reached the provider"
    );
    desk.start_again().await;
    desk.wait_until_everything_is_final().await;

    desk.assert_paid_once_and_answered_on_retry(id, 1_200, "killed-before-the-provider")
        .await;
}

#[tokio::test]
async fn a_charge_killed_while_the_provider_charged_without_answering_ends_succeeded_with_one_payment()
 {
    let mut desk = Deployment::open().await;
    desk.provider_charges_without_answering();
    let request = desk.create_in_background(1_300, "killed-during-the-call");
    wait_until("the provider charging", PATIENCE, || async {
        desk.simulator.ledger().payment_intents.len() == 1
    })
    .await;
    let (id, status, _, _) = desk.only_charge().await;
    assert_eq!(status, "pending", "the answer never came");
    assert_eq!(desk.payments_at_provider(id), 1);

    desk.kill();
    assert_cut_off(request).await;
    desk.start_again().await;
    desk.wait_until_everything_is_final().await;

    desk.assert_paid_once_and_answered_on_retry(id, 1_300, "killed-during-the-call")
        .await;
}

#[tokio::test]
async fn a_charge_killed_after_the_provider_charged_before_the_outcome_committed_ends_succeeded_with_one_payment()
 {
    let mut desk = Deployment::open().await;
    let hold = desk.hold_at_activity("succeeded").await;
    let request = desk.create_in_background(1_400, "killed-before-the-outcome");
    desk.wait_until_held().await;
    let (id, status, _, _) = desk.only_charge().await;
    assert_eq!(status, "pending", "the outcome is not committed");
    assert_eq!(desk.payments_at_provider(id), 1, "the provider answered");

    desk.kill();
    assert_cut_off(request).await;
    desk.release(hold).await;
    assert_eq!(desk.only_charge().await.1, "pending", "rolled back");
    desk.start_again().await;
    desk.wait_until_everything_is_final().await;

    desk.assert_paid_once_and_answered_on_retry(id, 1_400, "killed-before-the-outcome")
        .await;
}

#[tokio::test]
async fn a_refund_killed_after_the_provider_refunded_before_the_commit_ends_succeeded_with_one_refund()
 {
    let mut desk = Deployment::open().await;
    let charge = desk.paid_charge(2_000).await;
    let hold = desk.hold_at_activity("refunded").await;
    let request = desk.refund_in_background(&charge.id, 700, "killed-refund");
    desk.wait_until_held().await;
    assert_eq!(
        desk.simulator.ledger().refunds.len(),
        1,
        "the provider refunded"
    );
    assert_eq!(desk.refunds().await[0].0, "pending");

    desk.kill();
    assert_cut_off(request).await;
    desk.release(hold).await;
    desk.start_again().await;
    desk.wait_until_everything_is_final().await;

    let (id, status, refunded, payment) = desk.only_charge().await;
    assert_eq!((status.as_str(), refunded), ("partially_refunded", 700));
    let ledger = desk.simulator.ledger();
    assert_eq!(ledger.payment_intents.len(), 1);
    assert_eq!(ledger.refunds.len(), 1, "one refund at the provider");
    assert_eq!(Some(&ledger.refunds[0].payment_intent), payment.as_ref());
    assert_eq!(ledger.refunds[0].amount, refunded);
    let stored = desk.refunds().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].0.as_str(), stored[0].1, stored[0].2.as_ref()),
        ("succeeded", 700, Some(&ledger.refunds[0].id))
    );
    assert_eq!(
        desk.actions(id).await,
        ["created", "succeeded", "refund_requested", "refunded"]
    );
    let retried = desk
        .refund_again(&charge.id, 700, "killed-refund")
        .await
        .expect("the retry answers the refunded charge");
    assert_eq!(retried.id, charge.id);
    assert_eq!(
        retried.status,
        i32::from(v1::ChargeStatus::PartiallyRefunded)
    );
    assert_eq!(retried.amount_refunded.unwrap().amount_minor, 700);
    assert_eq!(desk.simulator.ledger().refunds.len(), 1);
}

#[tokio::test]
async fn a_declined_charge_killed_before_the_decline_committed_ends_failed_with_one_payment_attempt()
 {
    let mut desk = Deployment::open().await;
    let hold = desk.hold_at_activity("failed").await;
    let card = "pm_card_chargeDeclinedInsufficientFunds";
    let mut billing = desk.billing();
    let request = desk.create_request_paying_with(1_500, "killed-decline", card);
    let request = tokio::spawn(async move { billing.create_charge(request).await });
    desk.wait_until_held().await;
    let (id, status, _, _) = desk.only_charge().await;
    assert_eq!(status, "pending", "the decline is not committed");
    assert_eq!(desk.payments_at_provider(id), 1, "the provider declined");

    desk.kill();
    assert_cut_off(request).await;
    desk.release(hold).await;
    desk.start_again().await;
    desk.wait_until_everything_is_final().await;

    let (_, status, _, payment) = desk.only_charge().await;
    assert_eq!(status, "failed");
    assert_eq!(desk.payments_at_provider(id), 1);
    assert_eq!(
        payment.as_deref(),
        Some(desk.simulator.ledger().payment_intents[0].id.as_str())
    );
    assert_eq!(desk.actions(id).await, ["created", "failed"]);
    let retried = desk
        .billing()
        .create_charge(desk.create_request_paying_with(1_500, "killed-decline", card))
        .await
        .expect_err("the retry answers the decline");
    assert_eq!(retried.code(), tonic::Code::FailedPrecondition);
    assert_reason(&retried, Reason::CardDeclined);
    // Recorded as the lost 402 would have been: the provider's code and decline code.
    let info = crate::support::details(&retried)
        .error_info()
        .cloned()
        .expect("ErrorInfo");
    assert_eq!(info.metadata["code"], "card_declined");
    assert_eq!(info.metadata["decline_code"], "insufficient_funds");
    let mut conn = desk.database.connect().await;
    let recorded: (Option<String>, Option<String>) = charges::table
        .select((charges::failure_code, charges::decline_code))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        recorded,
        (
            Some("card_declined".to_owned()),
            Some("insufficient_funds".to_owned())
        )
    );
    assert_eq!(desk.simulator.ledger().payment_intents.len(), 1);
}

#[tokio::test]
async fn a_refund_killed_inside_its_first_phase_reserves_nothing_and_the_retry_refunds_once() {
    let mut desk = Deployment::open().await;
    let charge = desk.paid_charge(2_000).await;
    let hold = desk.hold_at_activity("refund_requested").await;
    let request = desk.refund_in_background(&charge.id, 600, "killed-refund-in-phase-1");
    desk.wait_until_held().await;

    desk.kill();
    assert_cut_off(request).await;
    desk.release(hold).await;
    desk.start_again().await;

    // Phase 1 never committed: nothing reserved on the charge, no refund anywhere.
    let (id, status, refunded, _) = desk.only_charge().await;
    assert_eq!((status.as_str(), refunded), ("succeeded", 0));
    assert!(desk.refunds().await.is_empty());
    assert!(desk.simulator.ledger().refunds.is_empty());
    let retried = desk
        .refund_again(&charge.id, 600, "killed-refund-in-phase-1")
        .await
        .expect("the retry refunds");
    assert_eq!(
        retried.status,
        i32::from(v1::ChargeStatus::PartiallyRefunded)
    );
    assert_eq!(retried.amount_refunded.unwrap().amount_minor, 600);
    let (_, status, refunded, _) = desk.only_charge().await;
    assert_eq!((status.as_str(), refunded), ("partially_refunded", 600));
    let ledger = desk.simulator.ledger();
    assert_eq!(ledger.refunds.len(), 1);
    assert_eq!(ledger.refunds[0].amount, 600);
    assert_eq!(
        desk.actions(id).await,
        ["created", "succeeded", "refund_requested", "refunded"]
    );
}

#[tokio::test]
async fn a_refund_killed_before_the_provider_received_it_is_sent_by_the_completer_once() {
    let mut desk = Deployment::open().await;
    let charge = desk.paid_charge(2_000).await;
    let (unreachable, received) = black_hole().await;
    desk.restart_with(&unreachable).await;
    let request = desk.refund_in_background(&charge.id, 2_000, "killed-refund-unsent");
    wait_until(
        "the refund sent to the unanswering provider",
        PATIENCE,
        || async {
            String::from_utf8_lossy(&received.lock().unwrap()).contains("POST /v1/refunds")
        },
    )
    .await;
    assert_eq!(desk.refunds().await[0].0, "pending", "phase 1 committed");
    assert_eq!(
        desk.only_charge().await.1,
        "refunded",
        "the amount is reserved"
    );

    desk.kill();
    assert_cut_off(request).await;
    assert!(
        desk.simulator.ledger().refunds.is_empty(),
        "nothing reached the provider"
    );
    desk.start_again().await;
    desk.wait_until_everything_is_final().await;

    let (id, status, refunded, payment) = desk.only_charge().await;
    assert_eq!((status.as_str(), refunded), ("refunded", 2_000));
    let ledger = desk.simulator.ledger();
    assert_eq!(ledger.refunds.len(), 1, "one refund at the provider");
    assert_eq!(Some(&ledger.refunds[0].payment_intent), payment.as_ref());
    assert_eq!(ledger.refunds[0].amount, 2_000);
    assert_eq!(desk.refunds().await[0].0, "succeeded");
    assert_eq!(
        desk.actions(id).await,
        ["created", "succeeded", "refund_requested", "refunded"]
    );
    let retried = desk
        .refund_again(&charge.id, 2_000, "killed-refund-unsent")
        .await
        .expect("the retry answers the refunded charge");
    assert_eq!(retried.status, i32::from(v1::ChargeStatus::Refunded));
    assert_eq!(desk.simulator.ledger().refunds.len(), 1);
}

#[tokio::test]
async fn three_charges_killed_together_at_three_phases_end_final_with_one_payment_each() {
    let mut desk = Deployment::open().await;
    // Paid by the provider, its answer never sent.
    desk.provider_charges_without_answering();
    let hanging = desk.create_in_background(2_100, "together-hanging");
    wait_until("the provider charging", PATIENCE, || async {
        desk.simulator.ledger().payment_intents.len() == 1
    })
    .await;
    // Recorded, its payment slow to come back: held at its outcome once it does.
    desk.simulator
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::Latency { millis: 5_000 },
            1,
        ))
        .unwrap();
    let answered = desk.create_in_background(2_200, "together-answered");
    wait_until("the second charge recorded", PATIENCE, || async {
        desk.charges().await.len() == 2
    })
    .await;
    let hold = desk.hold_at_activity("created,succeeded").await;
    // Held inside its first phase.
    let unrecorded = desk.create_in_background(2_300, "together-unrecorded");
    desk.wait_until_held_times(2).await;
    assert_eq!(desk.simulator.ledger().payment_intents.len(), 2);
    let before: Vec<String> = desk.charges().await.into_iter().map(|row| row.1).collect();
    assert_eq!(before, ["pending", "pending"]);

    desk.kill();
    for request in [hanging, answered, unrecorded] {
        assert_cut_off(request).await;
    }
    desk.release(hold).await;
    desk.start_again().await;
    desk.wait_until_everything_is_final().await;

    let after = desk.charges().await;
    assert_eq!(after.len(), 2, "the unrecorded charge left nothing");
    for (id, status, _, payment) in &after {
        assert_eq!(status, "succeeded");
        assert_eq!(desk.payments_at_provider(*id), 1);
        assert!(payment.is_some());
        assert_eq!(desk.actions(*id).await, ["created", "succeeded"]);
    }
    for (cents, key) in [
        (2_100, "together-hanging"),
        (2_200, "together-answered"),
        (2_300, "together-unrecorded"),
    ] {
        let retried = desk
            .charge_again(cents, key)
            .await
            .expect("the retry answers a paid charge");
        assert_eq!(retried.status, i32::from(v1::ChargeStatus::Succeeded));
        assert_eq!(retried.amount.unwrap().amount_minor, cents);
    }
    let charges = desk.charges().await;
    assert_eq!(charges.len(), 3);
    for (id, status, _, _) in &charges {
        assert_eq!(status, "succeeded");
        assert_eq!(desk.payments_at_provider(*id), 1);
    }
    assert_eq!(desk.simulator.ledger().payment_intents.len(), 3);
}
