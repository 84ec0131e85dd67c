//! Tickets at volume (issue 28, item 8; `bench/run --volume`): the import file, ImportTickets
//! polled until done (with GetTicket latency sampled while it runs), the same rows as one
//! CreateTicket each from concurrent clients, and ExportTickets over gRPC or REST with the
//! service's resident memory sampled from /proc while it streams. Each command prints one JSON
//! object on stdout and one line for people on stderr.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Subcommand;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use supportdesk::wire::proto::google::longrunning::operations_client::OperationsClient;
use supportdesk::wire::proto::google::longrunning::{self as lro, GetOperationRequest};
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::data::BenchData;
use crate::load::{LoadShape, drive, grpc_code_name, with_token};
use crate::probes::vm_rss_kib;
use crate::report::Report;
use crate::rest::HttpVersion;
use crate::scenario::{self, ScenarioName};

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Write the import file: ROWS tickets as CSV (header: subject, description,
    /// requester_email, priority), realistic words, spread over REQUESTERS requesters.
    Rows {
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
        #[arg(long, default_value_t = 1_000)]
        requesters: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// ImportTickets of FILE (CSV) as the admin of --data, polled with GetOperation until done.
    /// With --probe-rate, GetTicket of --probe-data's tickets runs at that rate (open loop)
    /// while the import does, for --probe-seconds after a 1 s warm-up.
    Import {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        probe_rate: Option<f64>,
        #[arg(long, default_value_t = 10.0)]
        probe_seconds: f64,
        #[arg(long)]
        probe_data: Option<PathBuf>,
    },
    /// CreateTicket of every row of FILE as the admin of --data, CONCURRENCY clients each on
    /// its own HTTP/2 connection with one call in flight, each call with an idempotency key.
    Create {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        file: PathBuf,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// ExportTickets of the account of --data as its admin: gRPC at --addr, or with --rest
    /// `GET /v1/tickets:export` through Envoy at --addr. The VmRSS of --rss-pid is read every
    /// --rss-every-ms during the export.
    Export {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        rest: bool,
        #[arg(long)]
        rss_pid: u32,
        #[arg(long, default_value_t = 10)]
        rss_every_ms: u64,
    },
    /// Print the markdown tables of a `bench/run --volume` from its JSON reports in RESULTS.
    Table {
        #[arg(long)]
        results: PathBuf,
    },
}

pub async fn run(command: VolumeCommand) -> anyhow::Result<()> {
    match command {
        VolumeCommand::Rows {
            rows,
            requesters,
            out,
        } => {
            let csv = import_csv(rows, requesters);
            std::fs::write(&out, &csv).with_context(|| format!("write {}", out.display()))?;
            eprintln!(
                "loadgen volume rows: {rows} rows over {requesters} requesters, {} bytes",
                csv.len()
            );
            Ok(())
        }
        VolumeCommand::Import {
            addr,
            data,
            file,
            probe_rate,
            probe_seconds,
            probe_data,
        } => {
            let data = BenchData::read(&data)?;
            let content = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            let probe = match probe_rate {
                Some(rate) => {
                    let path = probe_data.context("--probe-rate needs --probe-data")?;
                    Some((BenchData::read(&path)?, rate, probe_seconds))
                }
                None => None,
            };
            emit(&import(&addr, &data, content, probe).await?)
        }
        VolumeCommand::Create {
            addr,
            data,
            file,
            concurrency,
        } => {
            let data = BenchData::read(&data)?;
            let content = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            emit(&create_all(&addr, &data, &content, concurrency).await?)
        }
        VolumeCommand::Export {
            addr,
            data,
            rest,
            rss_pid,
            rss_every_ms,
        } => {
            let data = BenchData::read(&data)?;
            let every = Duration::from_millis(rss_every_ms.max(1));
            emit(&export(&addr, &data, rest, rss_pid, every).await?)
        }
        VolumeCommand::Table { results } => {
            print!("{}", table(&results)?);
            Ok(())
        }
    }
}

/// Prints `report` as one JSON line on stdout and, indented, on stderr.
fn emit<T: Serialize>(report: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(report)?);
    eprintln!("{}", serde_json::to_string_pretty(report)?);
    Ok(())
}

// ---- the import file ------------------------------------------------------------------------

/// Words of support tickets, for subjects and descriptions that read (and compress) like real
/// ones rather than like repeated filler.
const WORDS: &str = "\
    printer invoice login password reset email account billing refund charge card declined \
    error page loading slow crash app mobile browser chrome firefox safari update version \
    install download upload file attachment missing broken link button screen blank order \
    shipping delivery late address change cancel subscription plan upgrade downgrade trial \
    expired license key activation device laptop phone tablet network wifi vpn connection \
    timeout server report export import data sync calendar contact notification settings \
    profile photo name language timezone currency tax receipt payment failed twice duplicate \
    wrong amount discount coupon code please help urgent asap since yesterday today morning \
    again still not working cannot unable when after before trying open save print jams \
    paper toner scanner keyboard mouse monitor display sound audio video call meeting share \
    permission access denied team member invite admin role delete restore backup history \
    search filter results empty wrongly shows message popup warning the my our a is it on in \
    with and for to of ";

const PRIORITIES: &[&str] = &["low", "normal", "normal", "normal", "high"];

/// One row of the import file.
#[derive(Clone, Debug)]
pub struct ImportRow {
    pub subject: String,
    pub description: String,
    pub requester_email: String,
    pub priority: &'static str,
}

fn words(rng: &mut StdRng, list: &[&str], count: usize) -> String {
    let mut text = String::new();
    for index in 0..count {
        if index > 0 {
            text.push(' ');
        }
        text.push_str(list[rng.gen_range(0..list.len())]);
    }
    text
}

/// `rows` rows, the same for the same arguments (a fixed seed): subjects of 4–9 words,
/// descriptions of 10–40, requesters `requester-<n>@volume.example.com` for n below
/// `requesters`, priorities mostly normal. No field holds a comma, quote or line break.
pub fn import_rows(rows: usize, requesters: usize) -> Vec<ImportRow> {
    let mut rng = StdRng::seed_from_u64(0x1d_2026_0028);
    let list: Vec<&str> = WORDS.split_whitespace().collect();
    (0..rows)
        .map(|index| {
            let subject_words = rng.gen_range(4..10);
            let description_words = rng.gen_range(10..41);
            ImportRow {
                subject: format!("{} #{index}", words(&mut rng, &list, subject_words)),
                description: words(&mut rng, &list, description_words),
                requester_email: format!(
                    "requester-{}@volume.example.com",
                    rng.gen_range(0..requesters.max(1))
                ),
                priority: PRIORITIES[rng.gen_range(0..PRIORITIES.len())],
            }
        })
        .collect()
}

pub fn import_csv(rows: usize, requesters: usize) -> String {
    let mut csv = String::from("subject,description,requester_email,priority\n");
    for row in import_rows(rows, requesters) {
        csv.push_str(&format!(
            "{},{},{},{}\n",
            row.subject, row.description, row.requester_email, row.priority
        ));
    }
    csv
}

/// The rows of a file [`import_csv`] wrote.
fn parse_csv(content: &str) -> anyhow::Result<Vec<ImportRow>> {
    content
        .lines()
        .skip(1)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let [subject, description, requester_email, priority] = fields[..] else {
                anyhow::bail!("not a row of `loadgen volume rows`: {line}");
            };
            let priority = match priority {
                "low" => "low",
                "high" => "high",
                _ => "normal",
            };
            Ok(ImportRow {
                subject: subject.to_owned(),
                description: description.to_owned(),
                requester_email: requester_email.to_owned(),
                priority,
            })
        })
        .collect()
}

fn wire_priority(priority: &str) -> v1::TicketPriority {
    match priority {
        "low" => v1::TicketPriority::Low,
        "high" => v1::TicketPriority::High,
        _ => v1::TicketPriority::Normal,
    }
}

// ---- ImportTickets ---------------------------------------------------------------------------

/// A channel for calls that may carry a large message or take long.
async fn patient_channel(addr: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(600))
        .connect()
        .await
        .with_context(|| format!("connect to {addr}"))
}

#[derive(Debug, Serialize)]
pub struct ImportReport {
    pub scenario: &'static str,
    pub rows: usize,
    pub file_bytes: usize,
    /// From sending ImportTickets to the first GetOperation that answered done (polled every
    /// 20 ms).
    pub seconds: f64,
    /// The operation's own end_time − create_time.
    pub server_seconds: Option<f64>,
    /// rows ÷ seconds.
    pub rows_per_second: f64,
    pub state: String,
    pub rows_imported: i64,
    pub rows_failed: i64,
    pub polls: u64,
    /// GetTicket while the import ran (with --probe-rate).
    pub probe: Option<Report>,
    /// Whether the probe's measured window ended before the import was done (it measured an
    /// import running throughout).
    pub probe_within_import: Option<bool>,
}

fn operation_metadata(operation: &lro::Operation) -> anyhow::Result<v1::ImportTicketsMetadata> {
    let any = operation.metadata.as_ref().context("no metadata")?;
    Ok(v1::ImportTicketsMetadata::decode(any.value.as_slice())?)
}

fn seconds_between(
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
) -> Option<f64> {
    let (from, to) = (from?, to?);
    Some((to.seconds - from.seconds) as f64 + f64::from(to.nanos - from.nanos) / 1e9)
}

async fn import(
    addr: &str,
    data: &BenchData,
    content: String,
    probe: Option<(BenchData, f64, f64)>,
) -> anyhow::Result<ImportReport> {
    let channel = patient_channel(addr).await?;
    let mut tickets = TicketServiceClient::new(channel.clone())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let mut operations = OperationsClient::new(channel);
    let rows = content.lines().count().saturating_sub(1);
    let file_bytes = content.len();
    let mut request = with_token(
        &data.admin.access_token,
        v1::ImportTicketsRequest {
            format: v1::ImportFormat::Csv.into(),
            content,
        },
    );
    request.metadata_mut().insert(
        "idempotency-key",
        MetadataValue::try_from(format!("volume-import-{}", uuid::Uuid::now_v7().simple()))?,
    );
    let started = Instant::now();
    let accepted = tickets
        .import_tickets(request)
        .await
        .context("ImportTickets")?
        .into_inner();
    let name = accepted.name.clone();
    let probing = probe.map(|(probe_data, rate, seconds)| {
        let addr = addr.to_owned();
        tokio::spawn(async move {
            let scenario = scenario::build(
                ScenarioName::GetTicket,
                &addr,
                2,
                HttpVersion::Http1,
                Some(probe_data),
            )
            .await?;
            let shape = LoadShape {
                workers: 32,
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs_f64(seconds),
                rate: Some(rate),
                max_calls: None,
            };
            let recording = drive(scenario, &shape).await?;
            let ended = Instant::now();
            let report = Report::new(
                "GetTicket while an import runs".to_owned(),
                "open",
                &addr,
                (shape.workers, 2, Some(rate)),
                &recording,
            );
            anyhow::Ok((report, ended))
        })
    });
    let mut polls = 0;
    let done = loop {
        let operation = operations
            .get_operation(with_token(
                &data.admin.access_token,
                GetOperationRequest { name: name.clone() },
            ))
            .await
            .context("GetOperation")?
            .into_inner();
        polls += 1;
        if operation.done {
            break operation;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let finished = Instant::now();
    let seconds = (finished - started).as_secs_f64();
    let metadata = operation_metadata(&done)?;
    let state = v1::OperationState::try_from(metadata.state).map_or_else(
        |_| metadata.state.to_string(),
        |s| s.as_str_name().to_owned(),
    );
    let (probe, probe_within_import) = match probing {
        Some(task) => {
            let (report, ended) = task.await??;
            (Some(report), Some(ended <= finished))
        }
        None => (None, None),
    };
    Ok(ImportReport {
        scenario: "import",
        rows,
        file_bytes,
        seconds,
        server_seconds: seconds_between(metadata.create_time.as_ref(), metadata.end_time.as_ref()),
        rows_per_second: rows as f64 / seconds,
        state,
        rows_imported: metadata.rows_imported,
        rows_failed: metadata.rows_failed,
        polls,
        probe,
        probe_within_import,
    })
}

// ---- CreateTicket, one row at a time --------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct CreateReport {
    pub scenario: &'static str,
    pub rows: usize,
    pub clients: usize,
    /// From the first call sent to the last answer.
    pub seconds: f64,
    pub rows_per_second: f64,
    pub codes: std::collections::BTreeMap<String, u64>,
    pub errors: u64,
    pub latency_us: LatencySummary,
}

#[derive(Debug, Serialize)]
pub struct LatencySummary {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl LatencySummary {
    fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
        }
    }
}

async fn create_all(
    addr: &str,
    data: &BenchData,
    content: &str,
    clients: usize,
) -> anyhow::Result<CreateReport> {
    let rows = Arc::new(parse_csv(content)?);
    let run = uuid::Uuid::now_v7().simple().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let mut channels = Vec::new();
    for _ in 0..clients.max(1) {
        channels.push(crate::load::connect(addr).await?);
    }
    let token = crate::load::bearer(&data.admin.access_token)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for channel in channels {
        let (rows, next, run, token) = (
            Arc::clone(&rows),
            Arc::clone(&next),
            run.clone(),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut client = TicketServiceClient::new(channel);
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut codes = std::collections::BTreeMap::<String, u64>::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(row) = rows.get(index) else { break };
                let mut request = tonic::Request::new(v1::CreateTicketRequest {
                    ticket: Some(v1::Ticket {
                        subject: row.subject.clone(),
                        description: row.description.clone(),
                        requester_email: row.requester_email.clone(),
                        priority: wire_priority(row.priority).into(),
                        ..Default::default()
                    }),
                });
                request
                    .metadata_mut()
                    .insert("authorization", token.clone());
                request.metadata_mut().insert(
                    "idempotency-key",
                    MetadataValue::try_from(format!("volume-{run}-{index}"))?,
                );
                let sent = Instant::now();
                let code = match client.create_ticket(request).await {
                    Ok(_) => "OK",
                    Err(status) => grpc_code_name(status.code()),
                };
                latency.saturating_record(
                    u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX),
                );
                *codes.entry(code.to_owned()).or_default() += 1;
            }
            anyhow::Ok((latency, codes))
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut codes = std::collections::BTreeMap::<String, u64>::new();
    for task in tasks {
        let (histogram, counted) = task.await??;
        latency.add(&histogram)?;
        for (code, count) in counted {
            *codes.entry(code).or_default() += count;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let errors = codes
        .iter()
        .filter(|(code, _)| code.as_str() != "OK")
        .map(|(_, count)| count)
        .sum();
    Ok(CreateReport {
        scenario: "create",
        rows: rows.len(),
        clients,
        seconds,
        rows_per_second: rows.len() as f64 / seconds,
        codes,
        errors,
        latency_us: LatencySummary::of(&latency),
    })
}

// ---- ExportTickets with the service's RSS sampled -------------------------------------------

#[derive(Debug, Serialize)]
pub struct ExportReport {
    pub scenario: &'static str,
    /// `grpc` or `rest` (through Envoy, newline-delimited JSON).
    pub transport: &'static str,
    pub tickets: u64,
    /// Protobuf bytes of the messages (gRPC) or body bytes (REST) received.
    pub bytes: u64,
    pub seconds: f64,
    pub first_ticket_seconds: f64,
    pub tickets_per_second: f64,
    /// How the stream ended: `OK` or a gRPC code / HTTP status.
    pub outcome: String,
    pub rss: RssGrowth,
}

#[derive(Debug, Serialize)]
pub struct RssGrowth {
    pub pid: u32,
    /// The least of the samples taken in the 200 ms before the export started.
    pub before_kib: u64,
    pub peak_kib: u64,
    pub end_kib: u64,
    /// peak − before.
    pub peak_growth_kib: u64,
    pub samples: u64,
    pub every_ms: u64,
}

struct RssWatch {
    peak: Arc<AtomicU64>,
    last: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssWatch {
    fn start(pid: u32, every: Duration) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let last = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(AtomicU64::new(0));
        let task = {
            let (peak, last, samples) =
                (Arc::clone(&peak), Arc::clone(&last), Arc::clone(&samples));
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    ticks.tick().await;
                    if let Some(kib) = vm_rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                        last.store(kib, Ordering::Relaxed);
                        samples.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Self {
            peak,
            last,
            samples,
            task,
        }
    }

    fn finish(self, pid: u32, before_kib: u64, every: Duration) -> RssGrowth {
        self.task.abort();
        if let Some(kib) = vm_rss_kib(pid) {
            self.peak.fetch_max(kib, Ordering::Relaxed);
            self.last.store(kib, Ordering::Relaxed);
        }
        let peak_kib = self.peak.load(Ordering::Relaxed);
        RssGrowth {
            pid,
            before_kib,
            peak_kib,
            end_kib: self.last.load(Ordering::Relaxed),
            peak_growth_kib: peak_kib.saturating_sub(before_kib),
            samples: self.samples.load(Ordering::Relaxed),
            every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

async fn export(
    addr: &str,
    data: &BenchData,
    rest: bool,
    pid: u32,
    every: Duration,
) -> anyhow::Result<ExportReport> {
    let mut before_kib = u64::MAX;
    for _ in 0..10 {
        if let Some(kib) = vm_rss_kib(pid) {
            before_kib = before_kib.min(kib);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::ensure!(before_kib != u64::MAX, "no process {pid}");
    let watch = RssWatch::start(pid, every);
    let started = Instant::now();
    let (tickets, bytes, first, outcome) = if rest {
        export_rest(addr, &data.admin.access_token, started).await?
    } else {
        export_grpc(addr, &data.admin.access_token, started).await?
    };
    let seconds = started.elapsed().as_secs_f64();
    let rss = watch.finish(pid, before_kib, every);
    Ok(ExportReport {
        scenario: "export",
        transport: if rest { "rest" } else { "grpc" },
        tickets,
        bytes,
        seconds,
        first_ticket_seconds: first,
        tickets_per_second: tickets as f64 / seconds,
        outcome,
        rss,
    })
}

async fn export_grpc(
    addr: &str,
    token: &str,
    started: Instant,
) -> anyhow::Result<(u64, u64, f64, String)> {
    let channel = patient_channel(addr).await?;
    let mut stream = TicketServiceClient::new(channel)
        .export_tickets(with_token(token, v1::ExportTicketsRequest::default()))
        .await
        .context("ExportTickets")?
        .into_inner();
    let (mut tickets, mut bytes, mut first) = (0u64, 0u64, 0.0);
    let outcome = loop {
        match stream.message().await {
            Ok(Some(ticket)) => {
                if tickets == 0 {
                    first = started.elapsed().as_secs_f64();
                }
                tickets += 1;
                bytes += ticket.encoded_len() as u64;
            }
            Ok(None) => break "OK".to_owned(),
            Err(status) => break grpc_code_name(status.code()).to_owned(),
        }
    };
    Ok((tickets, bytes, first, outcome))
}

async fn export_rest(
    addr: &str,
    token: &str,
    started: Instant,
) -> anyhow::Result<(u64, u64, f64, String)> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::get("/v1/tickets:export")
        .header("host", addr)
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    let (mut tickets, mut bytes, mut first) = (0u64, 0u64, 0.0);
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the export's body")?;
        if let Some(chunk) = frame.data_ref() {
            if bytes == 0 {
                first = started.elapsed().as_secs_f64();
            }
            bytes += chunk.len() as u64;
            tickets += chunk.iter().filter(|byte| **byte == b'\n').count() as u64;
        }
    }
    Ok((tickets, bytes, first, status.as_u16().to_string()))
}

// ---- the tables of bench/results/volume.md ----------------------------------------------------

fn read_report(results: &std::path::Path, name: &str) -> anyhow::Result<serde_json::Value> {
    let path = results.join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
}

fn number(value: &serde_json::Value, pointer: &str) -> f64 {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(f64::NAN)
}

fn check(met: bool) -> &'static str {
    if met { "✓" } else { "✗" }
}

fn millis(micros: f64) -> String {
    format!("{:.2}", micros / 1000.0)
}

/// The markdown of a volume run: import against CreateTicket and pgbench, export memory and
/// throughput against COPY, GetTicket with and without an import, bytes on the wire.
pub fn table(results: &std::path::Path) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let import = read_report(results, "volume-import")?;
    let pgbench = read_report(results, "pg-volume-import")?;
    let create = read_report(results, "volume-create")?;
    let mut out = String::new();

    let import_rate = number(&import, "/rows_per_second");
    let pg_rate = number(&pgbench, "/rows_per_second");
    let create_rate = number(&create, "/rows_per_second");
    let vs_pg = import_rate / pg_rate;
    let vs_create = import_rate / create_rate;
    writeln!(out, "## Import against CreateTicket and pgbench\n")?;
    writeln!(
        out,
        "| what | rows | seconds | rows/s | ratio | target | notes |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---|---|")?;
    writeln!(
        out,
        "| ImportTickets (one CSV inline, polled until done) | {} | {:.1} | {:.0} | — | — | {}, {} imported, {} failed; server's own time {:.1} s |",
        number(&import, "/rows"),
        number(&import, "/seconds"),
        import_rate,
        import["state"].as_str().unwrap_or("?"),
        number(&import, "/rows_imported"),
        number(&import, "/rows_failed"),
        number(&import, "/server_seconds"),
    )?;
    writeln!(
        out,
        "| pgbench: the importer's statements, one client, a batch a transaction | {} | {:.1} | {:.0} | import ÷ pgbench = **{vs_pg:.2}** | ≥ 0.5 {} | {} batches; {:.1} s with connecting |",
        number(&pgbench, "/rows"),
        number(&pgbench, "/seconds_without_connecting"),
        pg_rate,
        check(vs_pg >= 0.5),
        number(&pgbench, "/batches"),
        number(&pgbench, "/seconds_wall"),
    )?;
    writeln!(
        out,
        "| CreateTicket, one call a row, {} clients | {} | {:.1} | {:.0} | import ÷ CreateTicket = **{vs_create:.1}** | ≥ 50 {} | {} errors; p50 {} ms, p99 {} ms |",
        number(&create, "/clients"),
        number(&create, "/rows"),
        number(&create, "/seconds"),
        create_rate,
        check(vs_create >= 50.0),
        number(&create, "/errors"),
        millis(number(&create, "/latency_us/p50")),
        millis(number(&create, "/latency_us/p99")),
    )?;

    let copy = read_report(results, "volume-copy")?;
    let copy_rate = number(&copy, "/rows_per_second");
    writeln!(out, "\n## Export: memory and throughput\n")?;
    writeln!(
        out,
        "| what | tickets | bytes | seconds | tickets/s | ÷ COPY | RSS before → peak (MiB) | peak growth | target |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---|---:|---|")?;
    for (name, label) in [
        ("volume-export-grpc", "ExportTickets, gRPC stream"),
        (
            "volume-export-rest",
            "ExportTickets, REST via Envoy (NDJSON)",
        ),
    ] {
        let Ok(export) = read_report(results, name) else {
            continue;
        };
        let growth_mib = number(&export, "/rss/peak_growth_kib") / 1024.0;
        writeln!(
            out,
            "| {label} ({}) | {} | {} | {:.2} | {:.0} | {:.2} | {:.1} → {:.1} | {growth_mib:.1} MiB | < 16 MiB {} |",
            export["outcome"].as_str().unwrap_or("?"),
            number(&export, "/tickets"),
            number(&export, "/bytes"),
            number(&export, "/seconds"),
            number(&export, "/tickets_per_second"),
            number(&export, "/tickets_per_second") / copy_rate,
            number(&export, "/rss/before_kib") / 1024.0,
            number(&export, "/rss/peak_kib") / 1024.0,
            check(growth_mib < 16.0),
        )?;
    }
    writeln!(
        out,
        "| COPY (the export's select) TO STDOUT, psql | {} | {} | {:.2} | {copy_rate:.0} | 1.00 | — | — | — |",
        number(&copy, "/rows"),
        number(&copy, "/bytes"),
        number(&copy, "/seconds"),
    )?;

    if let (Ok(idle), Ok(probe)) = (
        read_report(results, "volume-get-ticket-idle"),
        read_report(results, "volume-import-probe"),
    ) {
        writeln!(out, "\n## GetTicket while an import runs\n")?;
        writeln!(
            out,
            "| GetTicket at a fixed rate | calls/s | calls | errors | p50 ms | p90 ms | p99 ms | max ms | notes |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|")?;
        let during = &probe["probe"];
        for (label, report, note) in [
            ("no import running", &idle, String::new()),
            (
                "while the file is imported again",
                during,
                format!(
                    "import took {:.1} s ({:.0} rows/s); window inside the import: {}",
                    number(&probe, "/seconds"),
                    number(&probe, "/rows_per_second"),
                    probe["probe_within_import"]
                ),
            ),
        ] {
            writeln!(
                out,
                "| {label} | {:.0} | {} | {} | {} | {} | {} | {} | {note} |",
                number(report, "/rps"),
                number(report, "/calls"),
                number(report, "/errors"),
                millis(number(report, "/latency_us/p50")),
                millis(number(report, "/latency_us/p90")),
                millis(number(report, "/latency_us/p99")),
                millis(number(report, "/latency_us/max")),
            )?;
        }
        writeln!(
            out,
            "\nDuring ÷ without: p50 {:.2}×, p99 {:.2}×.",
            number(during, "/latency_us/p50") / number(&idle, "/latency_us/p50"),
            number(during, "/latency_us/p99") / number(&idle, "/latency_us/p99"),
        )?;
    }

    if let Ok(wire) = read_report(results, "volume-wire-bytes") {
        writeln!(
            out,
            "\n## Bytes on the wire: a page of {} tickets (ListTickets)\n",
            number(&wire, "/page_size")
        )?;
        writeln!(
            out,
            "| variant | answered with | bytes down a call | bytes up a call | page before compression | down ÷ uncompressed variant |"
        )?;
        writeln!(out, "|---|---|---:|---:|---:|---:|")?;
        let variants = wire["variants"].as_array().cloned().unwrap_or_default();
        let baseline = |prefix: &str| {
            variants
                .iter()
                .find(|v| {
                    v["variant"]
                        .as_str()
                        .is_some_and(|name| name.starts_with(prefix))
                        && v["encoding"] == "identity"
                })
                .map_or(f64::NAN, |v| number(v, "/response_bytes"))
        };
        let (grpc_plain, rest_plain) = (baseline("gRPC"), baseline("REST"));
        for variant in &variants {
            let name = variant["variant"].as_str().unwrap_or("?");
            let plain = if name.starts_with("gRPC") {
                grpc_plain
            } else {
                rest_plain
            };
            writeln!(
                out,
                "| {name} | {} | {:.0} | {:.0} | {} | {:.2} |",
                variant["encoding"].as_str().unwrap_or("?"),
                number(variant, "/response_bytes"),
                number(variant, "/request_bytes"),
                number(variant, "/payload_bytes"),
                number(variant, "/response_bytes") / plain,
            )?;
        }
    }
    Ok(out)
}
