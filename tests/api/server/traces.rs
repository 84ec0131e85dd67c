//! Traces over OTLP (docs/observability.md, "Traces"): the real binary with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set exports to a real OTLP receiver (support/otlp.rs). One
//! CreateCharge is one trace linking the RPC's server span, its SQL statements, its admission
//! script in Redis and its call to the payment provider, which received the same trace in
//! `traceparent`; a caller's well-formed `traceparent` makes the RPC part of the caller's trace,
//! a malformed one is ignored; the log lines of a traced RPC carry its `trace_id`.

use payment_simulator::{Simulator, SimulatorConfig};
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::billing_service_client::BillingServiceClient;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use supportdesk::wire::proto::v1::user_service_client::UserServiceClient;
use uuid::Uuid;

use crate::support::binary::{Running, sign_up_through};
use crate::support::otlp::{CLIENT, OtlpReceiver, ReceivedSpan, SERVER};
use crate::support::{PATIENCE, TEST_PASSWORD, TestDatabase};

const CREATE_CHARGE: &str = "supportdesk.v1.BillingService/CreateCharge";
const LIST_TICKETS: &str = "supportdesk.v1.TicketService/ListTickets";
const CREATE_TICKET: &str = "supportdesk.v1.TicketService/CreateTicket";

/// The spans of `trace_id`.
fn trace<'a>(spans: &'a [ReceivedSpan], trace_id: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|span| span.trace_id == trace_id)
        .collect()
}

/// True when `span` descends from the span `ancestor` within `spans`.
fn descends_from(spans: &[&ReceivedSpan], span: &ReceivedSpan, ancestor: &str) -> bool {
    let mut parent = span.parent_span_id.clone();
    while !parent.is_empty() {
        if parent == ancestor {
            return true;
        }
        parent = spans
            .iter()
            .find(|candidate| candidate.span_id == parent)
            .map(|candidate| candidate.parent_span_id.clone())
            .unwrap_or_default();
    }
    false
}

/// The RPC server span whose `request_id` is `request_id`.
fn rpc_span<'a>(spans: &'a [ReceivedSpan], request_id: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|span| {
        span.kind == SERVER && span.attribute("request_id").as_deref() == Some(request_id)
    })
}

/// The JSON log lines of `stdout`.
fn json_lines(stdout: &[String]) -> Vec<serde_json::Value> {
    stdout
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

#[tokio::test]
async fn a_charge_is_one_trace_linking_the_rpc_its_sql_and_the_payment_provider_call() {
    let receiver = OtlpReceiver::start();
    let database = TestDatabase::create().await;
    let simulator = Simulator::start(SimulatorConfig::default())
        .await
        .expect("the simulator starts");
    let endpoint = receiver.endpoint();
    let provider_url = simulator.base_url();
    let running = Running::start(
        &database,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "supportdesk-traces-test"),
            ("PAYMENT_PROVIDER_URL", provider_url.as_str()),
            ("PAYMENT_PROVIDER_SECRET_KEY", simulator.api_key()),
            ("SHUTDOWN_DELAY_MS", "0"),
        ],
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

    let idempotency_key = format!("traced-charge-{}", Uuid::now_v7().simple());
    let mut request = admin.request(v1::CreateChargeRequest {
        charge: Some(v1::Charge {
            customer_id: customer.id.clone(),
            amount: Some(v1::Money {
                amount_minor: 4_321,
                currency_code: "USD".to_owned(),
            }),
            payment_method: "pm_card_visa".to_owned(),
            ..Default::default()
        }),
    });
    request
        .metadata_mut()
        .insert("idempotency-key", idempotency_key.parse().unwrap());
    request
        .metadata_mut()
        .insert("x-request-id", "traced-charge".parse().unwrap());
    let charge = BillingServiceClient::new(channel.clone())
        .create_charge(request)
        .await
        .expect("charged")
        .into_inner();
    assert_eq!(charge.status(), v1::ChargeStatus::Succeeded);

    // The batch exporter sends within its schedule: poll until the provider call arrived.
    let spans = receiver
        .wait_for("the charge's RPC and provider spans", |spans| {
            rpc_span(spans, "traced-charge").is_some_and(|rpc| {
                spans.iter().any(|span| {
                    span.trace_id == rpc.trace_id
                        && span.attribute("provider").as_deref() == Some("payments")
                })
            })
        })
        .await;
    let rpc = rpc_span(&spans, "traced-charge").expect("the RPC's span");
    assert_eq!(rpc.name, CREATE_CHARGE);
    assert!(rpc.parent_span_id.is_empty(), "a root: {rpc:?}");
    assert_eq!(rpc.service.as_deref(), Some("supportdesk-traces-test"));
    assert_eq!(rpc.attribute("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(rpc.attribute("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(rpc.status, 0, "an OK answer leaves the status unset");
    assert_eq!(
        rpc.attribute("account_id"),
        Some(admin.account_id.to_string())
    );
    assert_eq!(rpc.attribute("caller"), Some(format!("user:{}", admin.id)));
    let one_trace = trace(&spans, &rpc.trace_id);

    let sql: Vec<&&ReceivedSpan> = one_trace
        .iter()
        .filter(|span| span.attribute("db.system").as_deref() == Some("postgresql"))
        .collect();
    assert!(
        sql.iter().any(|span| span
            .attribute("db.statement")
            .is_some_and(|statement| { statement.starts_with("INSERT INTO \"charges\"") })),
        "the charge's INSERT is in the trace: {sql:#?}"
    );
    for span in &sql {
        assert_eq!(span.kind, CLIENT);
        assert!(descends_from(&one_trace, span, &rpc.span_id), "{span:?}");
        let statement = span.attribute("db.statement").expect("a statement");
        assert!(
            !statement.contains(&idempotency_key) && !statement.contains("4321"),
            "a statement carries a value: {statement}"
        );
    }

    let admission = one_trace
        .iter()
        .find(|span| span.name == "admission.admit")
        .expect("the admission script's span is in the trace");
    assert_eq!(admission.kind, CLIENT);
    assert_eq!(admission.attribute("db.system").as_deref(), Some("redis"));
    assert!(descends_from(&one_trace, admission, &rpc.span_id));

    let provider: Vec<&&ReceivedSpan> = one_trace
        .iter()
        .filter(|span| span.attribute("provider").as_deref() == Some("payments"))
        .collect();
    assert_eq!(provider.len(), 1, "one attempt: {provider:#?}");
    let provider = provider[0];
    assert_eq!(provider.kind, CLIENT);
    assert!(descends_from(&one_trace, provider, &rpc.span_id));
    assert_eq!(provider.attribute("outcome").as_deref(), Some("ok"));
    assert_eq!(
        provider.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        provider.attribute("http.request.method").as_deref(),
        Some("POST")
    );

    // The provider received the trace: its parent is the provider call's span.
    let sent: Vec<String> = simulator
        .requests()
        .into_iter()
        .filter(|request| request.method == "POST")
        .map(|request| request.traceparent.expect("a traceparent on the request"))
        .collect();
    assert_eq!(
        sent,
        [format!("00-{}-{}-01", rpc.trace_id, provider.span_id)],
        "the provider saw the charge's trace"
    );

    running.terminate();
    let (code, stdout, stderr) = running.wait();
    assert_eq!(code, Some(0), "clean exit; stderr: {stderr}");
    let lines = json_lines(&stdout);
    let answered = lines
        .iter()
        .find(|line| {
            line["message"] == "rpc answered" && line["span"]["request_id"] == "traced-charge"
        })
        .expect("the charge's rpc answered line");
    assert_eq!(answered["trace_id"], rpc.trace_id.as_str(), "{answered}");
    assert_eq!(answered["span_id"], rpc.span_id.as_str(), "{answered}");
}

#[tokio::test]
async fn a_notification_sent_later_by_a_worker_is_in_the_trace_of_the_rpc_that_queued_it() {
    let receiver = OtlpReceiver::start();
    let database = TestDatabase::create().await;
    let email = crate::support::email_api::start_email_api().await;
    let endpoint = receiver.endpoint();
    let api_url = email.base_url();
    let running = Running::start(
        &database,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("EMAIL_PROVIDER", "http"),
            ("EMAIL_API_URL", api_url.as_str()),
            ("EMAIL_API_KEY", email.api_key()),
            ("EMAIL_FROM", "Support <support@desk.example.com>"),
            ("PUBLIC_BASE_URL", "https://desk.example.com/"),
            ("NOTIFICATION_POLL_INTERVAL_MS", "100"),
            ("SHUTDOWN_DELAY_MS", "0"),
        ],
    );
    let channel = running.channel().await;
    running.wait_for_health("Serving").await;
    let admin = sign_up_through(&channel).await;
    let mut request = admin.request(crate::support::valid_create_request("Traced mail"));
    request
        .metadata_mut()
        .insert("x-request-id", "queued-a-mail".parse().unwrap());
    TicketServiceClient::new(channel)
        .create_ticket(request)
        .await
        .expect("created");

    // The acknowledgement is sent by a worker, in a transaction of its own.
    crate::support::wait_until(
        "the email API receives the acknowledgement",
        PATIENCE,
        || {
            let sent = email.requests().len();
            async move { sent == 1 }
        },
    )
    .await;
    let spans = receiver
        .wait_for("the RPC's span and the send's", |spans| {
            rpc_span(spans, "queued-a-mail").is_some_and(|rpc| {
                spans.iter().any(|span| {
                    span.trace_id == rpc.trace_id
                        && span.attribute("provider").as_deref() == Some("email")
                })
            })
        })
        .await;
    let rpc = rpc_span(&spans, "queued-a-mail").expect("the RPC's span");
    assert_eq!(rpc.name, CREATE_TICKET);
    let one_trace = trace(&spans, &rpc.trace_id);
    let send = one_trace
        .iter()
        .find(|span| span.name == "notification.send")
        .expect("the worker's send is in the RPC's trace");
    assert_eq!(
        send.parent_span_id, rpc.span_id,
        "a child of the RPC's span"
    );
    let provider: Vec<&&ReceivedSpan> = one_trace
        .iter()
        .filter(|span| span.attribute("provider").as_deref() == Some("email"))
        .collect();
    assert_eq!(provider.len(), 1, "one attempt: {provider:#?}");
    let provider = provider[0];
    assert_eq!(provider.name, "email POST");
    assert_eq!(provider.kind, CLIENT);
    assert!(descends_from(&one_trace, provider, &send.span_id));
    assert_eq!(provider.attribute("outcome").as_deref(), Some("ok"));

    // The provider received the RPC's trace: its parent is the email call's span.
    let received: Vec<Option<String>> = email
        .requests()
        .into_iter()
        .map(|request| request.traceparent)
        .collect();
    assert_eq!(
        received,
        [Some(format!("00-{}-{}-01", rpc.trace_id, provider.span_id))]
    );
    // Where it lives: the row keeps the RPC's trace context.
    assert_eq!(
        crate::support::count_of(
            &database,
            &format!(
                "SELECT count(*) AS count FROM notifications \
                 WHERE trace_context LIKE '00-{}-%'",
                rpc.trace_id
            ),
        )
        .await,
        1
    );
    running.terminate();
    let (code, _, stderr) = running.wait();
    assert_eq!(code, Some(0), "clean exit; stderr: {stderr}");
}

#[tokio::test]
async fn a_callers_traceparent_makes_the_rpc_part_of_its_trace_and_a_malformed_one_is_ignored() {
    let receiver = OtlpReceiver::start();
    let database = TestDatabase::create().await;
    let endpoint = receiver.endpoint();
    let running = Running::start(
        &database,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("SHUTDOWN_DELAY_MS", "0"),
        ],
    );
    let channel = running.channel().await;
    running.wait_for_health("Serving").await;
    let admin = sign_up_through(&channel).await;
    let mut tickets = TicketServiceClient::new(channel.clone());

    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut traced = admin.request(v1::ListTicketsRequest::default());
    traced.metadata_mut().insert(
        "traceparent",
        format!("00-{caller_trace}-{caller_span}-01")
            .parse()
            .unwrap(),
    );
    traced
        .metadata_mut()
        .insert("x-request-id", "with-parent".parse().unwrap());
    tickets.list_tickets(traced).await.expect("listed");

    // Upper-case hex and trailing text: not W3C's form, so not a parent.
    let forged_trace = "0AF7651916CD43DD8448EB211C80319C";
    let mut malformed = admin.request(v1::ListTicketsRequest::default());
    malformed.metadata_mut().insert(
        "traceparent",
        format!("00-{forged_trace}-b7ad6b7169203331-01\"}} injected=1")
            .parse()
            .unwrap(),
    );
    malformed
        .metadata_mut()
        .insert("x-request-id", "malformed-parent".parse().unwrap());
    tickets.list_tickets(malformed).await.expect("listed");
    drop(tickets);

    let spans = receiver
        .wait_for("both RPCs' spans", |spans| {
            rpc_span(spans, "with-parent").is_some()
                && rpc_span(spans, "malformed-parent").is_some()
        })
        .await;
    let child = rpc_span(&spans, "with-parent").expect("the traced RPC");
    assert_eq!(child.name, LIST_TICKETS);
    assert_eq!(child.trace_id, caller_trace);
    assert_eq!(child.parent_span_id, caller_span);
    let own = rpc_span(&spans, "malformed-parent").expect("the other RPC");
    assert!(own.parent_span_id.is_empty(), "a root: {own:?}");
    assert_ne!(own.trace_id, forged_trace.to_ascii_lowercase());
    assert_ne!(own.trace_id, caller_trace);
    for span in &spans {
        for value in span.attributes.values() {
            assert!(!value.to_string().contains("injected"), "{span:?}");
        }
    }

    running.terminate();
    let (code, stdout, stderr) = running.wait();
    assert_eq!(code, Some(0), "clean exit; stderr: {stderr}");
    for line in &stdout {
        assert!(!line.contains("injected"), "caller text logged: {line}");
        assert!(
            !line
                .to_ascii_lowercase()
                .contains(&forged_trace.to_ascii_lowercase()),
            "a malformed trace id logged: {line}"
        );
    }
    let lines = json_lines(&stdout);
    let of = |request_id: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|line| line["span"]["request_id"] == request_id)
            .collect()
    };
    let with_parent = of("with-parent");
    assert!(!with_parent.is_empty());
    for line in with_parent {
        assert_eq!(line["trace_id"], caller_trace, "{line}");
    }
    let malformed = of("malformed-parent");
    assert!(!malformed.is_empty());
    for line in malformed {
        assert_eq!(line["trace_id"], own.trace_id.as_str(), "{line}");
    }
}

#[tokio::test]
async fn without_an_endpoint_log_lines_carry_no_trace_id() {
    let database = TestDatabase::create().await;
    let running = Running::start(&database, &[("SHUTDOWN_DELAY_MS", "0")]);
    let channel = running.channel().await;
    running.wait_for_health("Serving").await;
    let admin = sign_up_through(&channel).await;
    let mut traced = admin.request(v1::ListTicketsRequest::default());
    traced.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    TicketServiceClient::new(channel)
        .list_tickets(traced)
        .await
        .expect("listed");
    running.terminate();
    let (code, stdout, stderr) = running.wait();
    assert_eq!(code, Some(0), "clean exit; stderr: {stderr}");
    let lines = json_lines(&stdout);
    assert!(
        lines.iter().any(|line| line["message"] == "rpc answered"
            && line["span"]["method"] == format!("/{LIST_TICKETS}")),
        "the RPC was logged"
    );
    for line in &lines {
        assert!(line.get("trace_id").is_none(), "{line}");
        assert!(line["span"].get("otel.kind").is_none(), "{line}");
    }
}
