//! `loadgen oha`: the REST scenarios whose every request is the same (a path from a fixed list,
//! fixed headers) driven by `oha`, an established HTTP load generator from crates.io, instead of
//! loadgen's own driver. What oha does not measure stays here: the CPU time per call of the
//! processes behind the scenario and the service's counters over the measured window (read
//! around oha's measured run, after a warm-up run of its own), and the report in loadgen's shape,
//! so that `loadgen table` puts oha's rows beside loadgen's. bench/README.md, "Why these
//! drivers", says which scenario runs on which driver and why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::data::BenchData;
use crate::load::CALL_TIMEOUT;
use crate::probes::{CounterDelta, CpuReading, scrape};
use crate::report::{Percentiles, Report};

/// The fixed-request scenarios oha drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FixedRequest {
    /// `GET /v1/hello/bench` of the plain tonic server through its Envoy.
    RestHello,
    /// `GET /v1/tickets/{id}` through Envoy as the bench account's admin, the id picked at random
    /// from the bench data's tickets by oha (`--urls-from-file`): one token, every ticket.
    RestGetTicket,
    /// The seeds' Express stack: `GET /api/v1/tickets/{id}`, as its data's admin, the same way.
    ExpressGetTicket,
}

#[derive(clap::Args)]
pub struct OhaArgs {
    #[arg(long, value_enum)]
    scenario: FixedRequest,
    /// Envoy's address (`host:port`), or the Express stack's.
    #[arg(long)]
    addr: String,
    /// The data file of `loadgen setup` (every scenario but rest-hello).
    #[arg(long)]
    data: Option<PathBuf>,
    /// HTTP/1.1 keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Seconds of oha's warm-up run, not recorded.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// A number of recorded requests instead of a duration (one-at-a-time rows).
    #[arg(long)]
    calls: Option<u64>,
    /// The service's metrics address: its counters are read around the measured run.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// `NAME=PID`: report the CPU time per call of this process and its descendants over the
    /// measured run (repeatable). oha's own is reported as `oha`.
    #[arg(long = "cpu-of", value_parser = crate::probes::parse_named_pid)]
    cpu_of: Vec<(String, u32)>,
    /// The oha binary.
    #[arg(long, env = "OHA_BIN", default_value = "oha")]
    oha: PathBuf,
}

/// What `oha --output-format json` prints, the parts the report takes (times in seconds).
#[derive(Deserialize)]
struct OhaOutput {
    summary: OhaSummary,
    /// `null` where oha had no latency to take it from (NaN in its JSON).
    #[serde(rename = "latencyPercentiles")]
    latency_percentiles: BTreeMap<String, Option<f64>>,
    #[serde(rename = "statusCodeDistribution")]
    status_code_distribution: BTreeMap<String, u64>,
    #[serde(rename = "errorDistribution")]
    error_distribution: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct OhaSummary {
    total: f64,
    slowest: Option<f64>,
    average: Option<f64>,
}

/// How long an oha run lasts.
#[derive(Clone, Copy)]
enum Window {
    Seconds(f64),
    Requests(u64),
}

/// What oha is asked: the URL (or the file of URLs it picks from at random) and the headers.
struct Plan {
    target: String,
    from_file: bool,
    headers: Vec<String>,
}

pub async fn run(args: OhaArgs) -> anyhow::Result<()> {
    let data = args.data.as_deref().map(BenchData::read).transpose()?;
    let urls_file = std::env::temp_dir().join(format!("loadgen-oha-{}.urls", std::process::id()));
    let plan = plan(args.scenario, &args.addr, data.as_ref(), &urls_file)?;
    let outcome = measure(&args, &plan).await;
    if plan.from_file {
        let _ = std::fs::remove_file(&urls_file);
    }
    outcome?.emit()
}

fn plan(
    scenario: FixedRequest,
    addr: &str,
    data: Option<&BenchData>,
    urls_file: &Path,
) -> anyhow::Result<Plan> {
    let prefix = match scenario {
        FixedRequest::RestHello => {
            return Ok(Plan {
                target: format!("http://{addr}/v1/hello/bench"),
                from_file: false,
                headers: Vec::new(),
            });
        }
        FixedRequest::RestGetTicket => "/v1/tickets",
        FixedRequest::ExpressGetTicket => "/api/v1/tickets",
    };
    let data = data.with_context(|| format!("scenario {scenario:?} needs --data FILE"))?;
    anyhow::ensure!(!data.tickets.is_empty(), "the bench data has no tickets");
    let urls: String = data
        .tickets
        .iter()
        .map(|ticket| format!("http://{addr}{prefix}/{}\n", ticket.id))
        .collect();
    std::fs::write(urls_file, urls).with_context(|| format!("write {}", urls_file.display()))?;
    Ok(Plan {
        target: urls_file.display().to_string(),
        from_file: true,
        // The admin may read every ticket of the account: one fixed header for all of them.
        headers: vec![format!("authorization: Bearer {}", data.admin.access_token)],
    })
}

async fn measure(args: &OhaArgs, plan: &Plan) -> anyhow::Result<Report> {
    if args.warmup > 0.0 {
        run_oha(args, plan, Window::Seconds(args.warmup)).await?;
    }
    let counters_before = match &args.metrics_addr {
        Some(addr) => Some(scrape(addr).await?),
        None => None,
    };
    let cpu_before = CpuReading::now(&args.cpu_of);
    let window = args
        .calls
        .map_or(Window::Seconds(args.duration), Window::Requests);
    let output = run_oha(args, plan, window).await?;
    // oha has been waited for: its CPU time is in this process's children's time.
    let cpu_after = CpuReading::now(&args.cpu_of);
    let mut report = report_of(
        format!("{:?}", args.scenario),
        &args.addr,
        args.concurrency,
        &output,
    );
    if let (Some(before), Some(addr)) = (counters_before, &args.metrics_addr) {
        report.counters = Some(CounterDelta::between(&before, &scrape(addr).await?));
    }
    let mut cpu = cpu_after.per_call_since(&cpu_before, report.calls);
    if let Some(driver) = cpu.remove("loadgen") {
        cpu.insert("oha".to_owned(), driver);
    }
    report.cpu_us_per_call = Some(cpu);
    Ok(report)
}

async fn run_oha(args: &OhaArgs, plan: &Plan, window: Window) -> anyhow::Result<OhaOutput> {
    let mut command = tokio::process::Command::new(&args.oha);
    command
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--disable-compression",
        ])
        .args(["-c", &args.concurrency.to_string()])
        .args(["-t", &format!("{}s", CALL_TIMEOUT.as_secs())]);
    match window {
        // -w: requests in flight at the deadline are waited for, not counted as aborted.
        Window::Seconds(seconds) => command
            .args(["-z", &format!("{}ms", (seconds * 1000.0).round())])
            .arg("-w"),
        Window::Requests(requests) => command.args(["-n", &requests.to_string()]),
    };
    for header in &plan.headers {
        command.args(["-H", header]);
    }
    if plan.from_file {
        command.arg("--urls-from-file");
    }
    command.arg(&plan.target);
    command.kill_on_drop(true);
    let output = tokio::time::timeout(
        Duration::from_secs_f64(args.warmup + args.duration) + Duration::from_secs(600),
        command.output(),
    )
    .await
    .context("oha did not finish")?
    .with_context(|| format!("run {}", args.oha.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "oha failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    serde_json::from_slice(&output.stdout).context("parse oha's JSON output")
}

/// oha's output as loadgen's report: its status codes as outcomes (a failure below HTTP as
/// `TRANSPORT`), its exact percentiles; req/s over oha's own measured time.
fn report_of(scenario: String, addr: &str, concurrency: usize, output: &OhaOutput) -> Report {
    let mut codes: BTreeMap<String, u64> = output.status_code_distribution.clone();
    for (error, count) in &output.error_distribution {
        eprintln!("oha: {count} requests failed: {error}");
        *codes.entry("TRANSPORT".to_owned()).or_default() += count;
    }
    let calls: u64 = codes.values().sum();
    let errors = codes
        .iter()
        .filter(|(code, _)| !code.parse::<u16>().is_ok_and(|s| (200..300).contains(&s)))
        .map(|(_, count)| count)
        .sum();
    let micros = |seconds: f64| (seconds * 1_000_000.0).round() as u64;
    let percentile = |name: &str| {
        output
            .latency_percentiles
            .get(name)
            .copied()
            .flatten()
            .filter(|v| v.is_finite())
            .map_or(0, micros)
    };
    let seconds = output.summary.total;
    Report {
        scenario,
        mode: if concurrency == 1 {
            "one-at-a-time (oha)".to_owned()
        } else {
            "closed (oha)".to_owned()
        },
        target: addr.to_owned(),
        workers: concurrency,
        connections: concurrency,
        rate: None,
        seconds,
        calls,
        errors,
        rps: if seconds > 0.0 {
            calls as f64 / seconds
        } else {
            0.0
        },
        codes,
        latency_us: (calls > 0).then(|| Percentiles {
            count: calls,
            mean: output.summary.average.unwrap_or(0.0) * 1_000_000.0,
            p50: percentile("p50"),
            p90: percentile("p90"),
            p99: percentile("p99"),
            p999: percentile("p99.9"),
            max: output.summary.slowest.map_or(0, micros),
        }),
        upstream_time_us: None,
        counters: None,
        rss: None,
        cpu_us_per_call: None,
    }
}

#[cfg(test)]
mod tests {
    use super::{OhaOutput, report_of};

    #[test]
    fn oha_json_becomes_a_report_with_its_statuses_and_errors() {
        let text = r#"{"summary":{"successRate":0.99,"total":2.0,"slowest":0.02,"fastest":0.0001,
            "average":0.001,"requestsPerSec":500.0,"totalData":10,"sizePerRequest":1,"sizePerSec":5.0},
            "latencyPercentiles":{"p50":0.001,"p90":0.002,"p99":0.005,"p99.9":0.01,"p99.99":0.02},
            "statusCodeDistribution":{"200":990,"404":5},"errorDistribution":{"connection closed":5}}"#;
        let output: OhaOutput = serde_json::from_str(text).unwrap();
        assert_eq!(output.status_code_distribution["200"], 990);
        assert_eq!(output.error_distribution["connection closed"], 5);
        let report = report_of("RestGetTicket".to_owned(), "127.0.0.1:1", 50, &output);
        assert_eq!(report.calls, 1000);
        assert_eq!(report.errors, 10, "the 404s and the transport failures");
        assert_eq!(report.codes["TRANSPORT"], 5);
        assert!((report.rps - 500.0).abs() < 1e-9);
        let latency = report.latency_us.expect("calls were made");
        assert_eq!(
            (latency.p50, latency.p99, latency.p999),
            (1_000, 5_000, 10_000)
        );
        assert_eq!(latency.max, 20_000);
    }

    #[test]
    fn a_run_with_no_answer_is_all_errors_not_a_parse_failure() {
        let text = r#"{"summary":{"successRate":0.0,"total":1.0,"slowest":null,"fastest":null,
            "average":null,"requestsPerSec":3.0,"totalData":0,"sizePerRequest":null,"sizePerSec":0.0},
            "latencyPercentiles":{"p50":null,"p99":null},
            "statusCodeDistribution":{},"errorDistribution":{"connection refused":3}}"#;
        let output: OhaOutput = serde_json::from_str(text).unwrap();
        let report = report_of("RestHello".to_owned(), "127.0.0.1:1", 1, &output);
        assert_eq!((report.calls, report.errors), (3, 3));
        assert_eq!(report.mode, "one-at-a-time (oha)");
        assert_eq!(report.latency_us.map(|l| l.p50), Some(0));
    }
}
