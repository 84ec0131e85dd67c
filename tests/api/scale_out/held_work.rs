//! Work an instance holds when it is told to stop, followed to its end (the chaos run's "SIGTERM
//! of an instance while it holds work"): an import of an account of its own, sent straight to
//! the instance so that its own workers, woken at once, claim it; the instance is stopped while
//! the import runs; its log must say it gave the import back unfinished, another worker must
//! finish it, and PostgreSQL must hold each of its rows exactly once (the checkpoint it resumed
//! from is the one the stopped worker committed with its last batch).

use std::time::{Duration, Instant};

use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;

use crate::support::binary::sign_up_through;
use crate::support::fleet::Fleet;
use crate::support::load::Outcome;
use crate::support::{PATIENCE, TestUser, count_of, keyed};

/// Rows of the held import: about 700 KB of CSV, several seconds of work at the importer's
/// 3,400 rows a second (docs/operations.md), well beyond the instance's shutdown delay.
const HELD_ROWS: usize = 20_000;

/// Imports an instance was sent to hold: the one it claimed, and any another instance won the
/// race for (each must be done once as well).
pub(crate) struct HeldImports {
    account: TestUser,
    /// The operation the instance claimed.
    held: String,
    /// Every operation sent, the held one among them.
    sent: Vec<String>,
}

fn held_import_csv(attempt: usize) -> String {
    let mut csv = String::from("subject,description,requester_email\n");
    for row in 0..HELD_ROWS {
        csv.push_str(&format!("held {attempt}-{row},.,held-{row}@example.com\n"));
    }
    csv
}

/// Signs up an account of its own and sends its import straight to instance `index` until that
/// instance's log says it claimed one: its workers are woken by the call, the others poll, so
/// it nearly always wins; when another instance does, another import is sent.
pub(crate) async fn an_import_held_by(fleet: &Fleet, index: usize) -> HeldImports {
    let account = sign_up_through(&fleet.envoy_channel()).await;
    let mut tickets = TicketServiceClient::new(fleet.direct_channel(index).await)
        .max_decoding_message_size(4 << 20)
        .max_encoding_message_size(4 << 20);
    let mut sent = Vec::new();
    for attempt in 0..5 {
        let operation = tickets
            .import_tickets(keyed(account.request(v1::ImportTicketsRequest {
                format: v1::ImportFormat::Csv.into(),
                content: held_import_csv(attempt),
            })))
            .await
            .expect("the import is accepted")
            .into_inner()
            .name;
        sent.push(operation.clone());
        let started = Instant::now();
        loop {
            let claimed_by = (0..fleet.size())
                .find(|&instance| logged(fleet, instance, &operation, "operation claimed"));
            match claimed_by {
                Some(instance) if instance == index => {
                    return HeldImports {
                        account,
                        held: operation,
                        sent,
                    };
                }
                Some(_) => break,
                None => {
                    assert!(
                        started.elapsed() < PATIENCE,
                        "no instance claimed {operation} within {PATIENCE:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    panic!("instance {index} claimed none of its five imports: {sent:?}");
}

/// Whether a line of instance `instance`'s log (every life of it) names `operation` and says
/// `what`.
fn logged(fleet: &Fleet, instance: usize, operation: &str, what: &str) -> bool {
    fleet
        .log_of(instance)
        .lines()
        .any(|line| line.contains(operation) && line.contains(what))
}

impl HeldImports {
    /// Right after instance `index` exited on SIGTERM (before anything else writes its log): it
    /// gave the held import back unfinished and did not finish it.
    pub(crate) fn assert_given_back_by(&self, fleet: &Fleet, index: usize) {
        assert!(
            !logged(fleet, index, &self.held, "operation finished"),
            "instance {index} finished {} within its shutdown delay: it held nothing when it \
             stopped (make the import larger)",
            self.held
        );
        assert!(
            logged(fleet, index, &self.held, "operation given back unfinished"),
            "instance {index} stopped without giving {} back: {}",
            self.held,
            fleet.log_of(index)
        );
    }

    /// After the drain: the held import finished by another worker (an instance's log says so),
    /// succeeded, and each row of every import sent is a ticket exactly once; counted into
    /// `outcome`, for the report.
    pub(crate) async fn assert_finished_once(&self, fleet: &Fleet, outcome: &mut Outcome) {
        assert!(
            (0..fleet.size()).any(|instance| logged(
                fleet,
                instance,
                &self.held,
                "operation finished"
            )),
            "no instance finished {} after it was given back",
            self.held
        );
        let account = self.account.account_id;
        assert_eq!(
            count_of(
                &fleet.database,
                &format!(
                    "SELECT count(*) AS count FROM operations \
                     WHERE account_id = '{account}' AND state = 'succeeded'"
                )
            )
            .await,
            self.sent.len() as i64,
            "every import sent to the stopped instance succeeded: {:?}",
            self.sent
        );
        let rows = (self.sent.len() * HELD_ROWS) as i64;
        assert_eq!(
            count_of(
                &fleet.database,
                &format!(
                    "SELECT count(DISTINCT subject) AS count FROM tickets \
                     WHERE account_id = '{account}' AND subject LIKE 'held %'"
                )
            )
            .await,
            rows,
            "every row of the held import is a ticket"
        );
        assert_eq!(
            count_of(
                &fleet.database,
                &format!("SELECT count(*) AS count FROM tickets WHERE account_id = '{account}'")
            )
            .await,
            rows,
            "no row of the held import is a ticket twice"
        );
        // Each claim's log line says where it started: the resumed claim starts at the
        // checkpoint the stopped worker committed last.
        let resumed_at = (0..fleet.size())
            .flat_map(|instance| {
                fleet
                    .log_of(instance)
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter(|line| line.contains(&self.held) && line.contains("operation claimed"))
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
            .filter_map(|claim| claim["rows_read"].as_u64())
            .max()
            .expect("the held import's claims are logged");
        outcome.counted(
            "imports the instance stopped with SIGTERM held, given back unfinished and finished \
             by another worker",
            1,
        );
        outcome.counted(
            "rows of it the stopped instance had committed when it gave it back (where the next \
             worker resumed)",
            usize::try_from(resumed_at).unwrap_or(usize::MAX),
        );
        outcome.counted(
            "rows of the imports sent to that instance, each a ticket exactly once",
            usize::try_from(rows).unwrap_or(usize::MAX),
        );
    }
}
