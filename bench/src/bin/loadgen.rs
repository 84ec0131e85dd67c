//! `loadgen`: sets up bench data through supportdesk's public API (`setup`, `collect`), then
//! drives a scenario closed-loop or at a fixed rate (`run`) or one call at a time (`latency`),
//! or has oha drive a fixed-request REST scenario (`oha`), and reports req/s, outcomes by status
//! code and HDR latency percentiles as one JSON line on stdout and one human line on stderr.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use supportdesk_bench::data::BenchData;
use supportdesk_bench::load::{LoadShape, drive};
use supportdesk_bench::probes::{CounterDelta, CpuReading, RssSampler, cpu_ticks_of_tree, scrape};
use supportdesk_bench::report::Report;
use supportdesk_bench::rest::HttpVersion;
use supportdesk_bench::scenario::{self, ScenarioName};
use supportdesk_bench::setup::{self, SetupPlan};

#[derive(Parser)]
#[command(about = "Load generator of the supportdesk benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign up a fresh account, create and log in customers, create tickets; write the data file.
    Setup {
        /// The service's gRPC address.
        #[arg(long)]
        addr: String,
        /// How many customers to create (each logged in).
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// How many tickets to create, spread over the customers.
        #[arg(long, default_value_t = 2000)]
        tickets: usize,
        /// Where to write the data.
        #[arg(long)]
        out: PathBuf,
    },
    /// Log in to an existing account (the demo one) and collect its ticket ids.
    Collect {
        #[arg(long)]
        addr: String,
        #[arg(long, default_value = "demo")]
        account: String,
        #[arg(long, default_value = "admin@demo.example")]
        email: String,
        /// The password; from LOADGEN_PASSWORD when not given.
        #[arg(long, env = "LOADGEN_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value_t = 100_000)]
        max_tickets: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Drive a scenario: closed loop, or open loop at --rate calls per second.
    Run(RunArgs),
    /// One call at a time, for --calls calls after a short warm-up.
    Latency(LatencyArgs),
    /// A fixed-request REST scenario driven by oha (GET hello, GET a ticket as the admin), with
    /// the CPU per call and the service's counters read around its measured run.
    Oha(supportdesk_bench::oha::OhaArgs),
    /// Print the markdown table of a bench/run from its rows file and JSON reports.
    Table {
        /// Lines of `key<TAB>label<TAB>ratio-to key or -<TAB>targets` (comma-separated:
        /// errors=0, undecided=0, hit>=R, p99<Nms); the report of a row is RESULTS/key.json.
        #[arg(long)]
        rows: PathBuf,
        #[arg(long)]
        results: PathBuf,
    },
    /// Print the CPU time of a process and its descendants, in ticks of 1/100 s: bench/run
    /// reads PostgreSQL's around a pgbench run.
    CpuTicks {
        #[arg(long)]
        of: u32,
    },
    /// Print where a process's CPU went, by part of the stack, from the text of `perf report
    /// --stdio --sort dso,sym` (bench/run --profile).
    Profile {
        /// The saved output of `perf report --stdio --sort dso,sym`.
        #[arg(long)]
        report: PathBuf,
        /// The process's CPU µs per call in the same run, to turn shares into µs per call.
        #[arg(long)]
        cpu_us_per_call: Option<f64>,
        /// How many of the heaviest symbols to list.
        #[arg(long, default_value_t = 12)]
        top: usize,
    },
    /// Tickets at volume (bench/run --volume): the import file, ImportTickets, the same rows
    /// by CreateTicket, ExportTickets with the service's RSS sampled.
    Volume {
        #[command(subcommand)]
        command: supportdesk_bench::volume::VolumeCommand,
    },
    /// Bytes on the wire of a page of tickets: gRPC plain, gzip and zstd, and REST through
    /// Envoy with and without Accept-Encoding, each counted through a TCP proxy.
    WireBytes(supportdesk_bench::wire_bytes::WireBytesArgs),
    /// How late outbound webhooks arrive at a steady rate of events, some endpoints hanging
    /// (bench/run --webhooks).
    WebhookLag(supportdesk_bench::webhook_lag::WebhookLagArgs),
}

#[derive(Args)]
struct Target {
    #[arg(long, value_enum)]
    scenario: ScenarioName,
    /// gRPC address (`host:port`) of the service or hello; for REST scenarios, Envoy's.
    #[arg(long)]
    addr: String,
    /// The data file of `setup` or `collect` (every scenario but hello).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The service's metrics address: counters are read before and after the measured window.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// The HTTP version of the REST scenarios' connections (http2: cleartext, prior knowledge).
    #[arg(long, value_enum, default_value_t = HttpVersion::Http1)]
    rest_http: HttpVersion,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Calls in flight (gRPC: streams over --connections connections; REST: one HTTP/1.1
    /// connection each).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the gRPC streams are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up, not counted.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Calls per second (open loop); closed loop when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Sample this process's VmRSS during the run.
    #[arg(long)]
    rss_pid: Option<u32>,
    /// Seconds between RSS samples.
    #[arg(long, default_value_t = 1.0)]
    rss_every: f64,
    /// `NAME=PID`: report the CPU time per call of this process and its descendants over the
    /// measured window (repeatable; several PIDs under one name add up; the load generator's own
    /// is always reported).
    #[arg(long = "cpu-of", value_parser = supportdesk_bench::probes::parse_named_pid)]
    cpu_of: Vec<(String, u32)>,
    /// Stop after about this many recorded calls (each worker stops at its next call once the
    /// count is reached; the report has the exact number), or the duration, whichever is first.
    #[arg(long)]
    calls: Option<u64>,
}

#[derive(Args)]
struct LatencyArgs {
    #[command(flatten)]
    target: Target,
    /// Recorded calls.
    #[arg(long, default_value_t = 2000)]
    calls: u64,
    /// Seconds of warm-up calls, not counted.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup {
            addr,
            users,
            tickets,
            out,
        } => {
            let data = setup::populate(
                &addr,
                &SetupPlan {
                    customers: users,
                    tickets,
                },
            )
            .await?;
            data.write(&out)
        }
        Command::Collect {
            addr,
            account,
            email,
            password,
            max_tickets,
            out,
        } => {
            let data = setup::collect(&addr, &account, &email, &password, max_tickets).await?;
            data.write(&out)
        }
        Command::Table { rows, results } => {
            print!("{}", supportdesk_bench::table::render(&rows, &results)?);
            Ok(())
        }
        Command::Profile {
            report,
            cpu_us_per_call,
            top,
        } => {
            let text = std::fs::read_to_string(&report)?;
            let shares = supportdesk_bench::profile::parse_report(&text);
            anyhow::ensure!(!shares.is_empty(), "{} holds no samples", report.display());
            print!(
                "{}",
                supportdesk_bench::profile::summary(&shares, cpu_us_per_call, top)
            );
            Ok(())
        }
        Command::Volume { command } => supportdesk_bench::volume::run(command).await,
        Command::WireBytes(args) => supportdesk_bench::wire_bytes::run(args).await,
        Command::WebhookLag(args) => supportdesk_bench::webhook_lag::run(args).await,
        Command::Oha(args) => supportdesk_bench::oha::run(args).await,
        Command::CpuTicks { of } => {
            let ticks = cpu_ticks_of_tree(of).ok_or_else(|| anyhow::anyhow!("no process {of}"))?;
            println!("{ticks}");
            Ok(())
        }
        Command::Run(args) => {
            let shape = LoadShape {
                workers: args.concurrency,
                warmup: Duration::from_secs_f64(args.warmup),
                duration: Duration::from_secs_f64(args.duration),
                rate: args.rate,
                max_calls: args.calls,
            };
            let mode = if args.rate.is_some() {
                "open"
            } else {
                "closed"
            };
            let rss = args
                .rss_pid
                .map(|pid| (pid, Duration::from_secs_f64(args.rss_every)));
            measure(
                &args.target,
                args.connections,
                &shape,
                mode,
                rss,
                &args.cpu_of,
            )
            .await
        }
        Command::Latency(args) => {
            let shape = LoadShape {
                workers: 1,
                warmup: Duration::from_secs_f64(args.warmup),
                // Bounded by the call count; the duration is only a safety net.
                duration: Duration::from_secs(600),
                rate: None,
                max_calls: Some(args.calls),
            };
            measure(&args.target, 1, &shape, "one-at-a-time", None, &[]).await
        }
    }
}

async fn measure(
    target: &Target,
    connections: usize,
    shape: &LoadShape,
    mode: &str,
    rss: Option<(u32, Duration)>,
    cpu_of: &[(String, u32)],
) -> anyhow::Result<()> {
    let data = match &target.data {
        Some(path) => Some(BenchData::read(path)?),
        None => None,
    };
    let scenario = scenario::build(
        target.scenario,
        &target.addr,
        connections,
        target.rest_http,
        data,
    )
    .await?;
    // The "before" counters are read when the warm-up ends, from a task of their own, so the
    // window they bound is the measured one.
    let before = target.metrics_addr.clone().map(|addr| {
        let warmup = shape.warmup;
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            scrape(&addr).await
        })
    });
    let cpu_before = {
        let (warmup, trees) = (shape.warmup, cpu_of.to_vec());
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            CpuReading::now(&trees)
        })
    };
    let sampler = rss.map(|(pid, every)| (pid, RssSampler::start(pid, every)));
    let recording = drive(Arc::clone(&scenario), shape).await?;
    let cpu_after = CpuReading::now(cpu_of);
    let name = format!("{:?}", target.scenario);
    let mut report = Report::new(
        name,
        mode,
        &target.addr,
        (shape.workers, connections, shape.rate),
        &recording,
    );
    if let (Some(before), Some(addr)) = (before, &target.metrics_addr) {
        let before = before.await??;
        let after = scrape(addr).await?;
        report.counters = Some(CounterDelta::between(&before, &after));
    }
    report.rss = sampler.map(|(pid, sampler)| sampler.finish(pid));
    report.cpu_us_per_call = Some(cpu_after.per_call_since(&cpu_before.await?, report.calls));
    report.emit()
}
