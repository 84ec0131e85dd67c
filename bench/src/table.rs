//! `loadgen table`: turns the JSON reports of one `bench/run` into the markdown table people
//! read. Each row names its report, the row its ratio is taken against, and the targets it is
//! checked against (`errors=0`, `undecided=0`, `hit>=0.99`, `p99<40ms`, `p50<=1.1*ratio`, ...),
//! so the table says what passed, not only what was measured.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// One line of the rows file: `key<TAB>label<TAB>ratio-to key or -<TAB>targets`.
struct Row {
    key: String,
    label: String,
    ratio_to: Option<String>,
    targets: Vec<String>,
}

pub fn render(rows_file: &Path, results: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(rows_file)
        .with_context(|| format!("read {}", rows_file.display()))?;
    let rows: Vec<Row> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut fields = line.split('\t');
            let mut next = || fields.next().unwrap_or("").to_owned();
            let (key, label, ratio_to, targets) = (next(), next(), next(), next());
            Row {
                key,
                label,
                ratio_to: (ratio_to != "-" && !ratio_to.is_empty()).then_some(ratio_to),
                targets: targets
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
            }
        })
        .collect();
    let load = |key: &str| -> Option<Value> {
        let path = results.join(format!("{key}.json"));
        let text = std::fs::read_to_string(path).ok()?;
        // The report is the last JSON line (loadgen prints exactly one).
        serde_json::from_str(text.lines().last()?).ok()
    };

    let mut out = String::new();
    out.push_str(
        "| scenario | req/s | p50 | p99 | p99.9 | outcomes | ratio | target | notes |\n\
         |---|---:|---:|---:|---:|---|---|---|---|\n",
    );
    for row in &rows {
        let Some(report) = load(&row.key) else {
            let _ = writeln!(out, "| {} | (no result) | | | | | | | |", row.label);
            continue;
        };
        let rps = report["rps"].as_f64().unwrap_or(0.0);
        let latency = &report["latency_us"];
        let ratio = row.ratio_to.as_deref().map_or_else(String::new, |other| {
            let other_report = load(other);
            let other_rps = other_report
                .as_ref()
                .and_then(|r| r["rps"].as_f64())
                .unwrap_or(0.0);
            let other_label = rows
                .iter()
                .find(|r| r.key == other)
                .map_or(other, |r| r.label.as_str());
            if report["mode"] == "pgbench" {
                // Database rows: how much of the database's ceiling the service reached.
                if rps > 0.0 {
                    format!("{:.2} (service {other} ÷ this)", other_rps / rps)
                } else {
                    String::new()
                }
            } else if other_rps > 0.0 {
                format!("{:.2} of {}", rps / other_rps, short(other_label))
            } else {
                String::new()
            }
        });
        let other = row.ratio_to.as_deref().and_then(load);
        let targets: Vec<String> = row
            .targets
            .iter()
            .map(|t| check(t, &report, other.as_ref(), &load))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            rps,
            ms(&latency["p50"]),
            ms(&latency["p99"]),
            ms(&latency["p999"]),
            outcomes(&report),
            ratio,
            targets.join(", "),
            notes(&report)
        );
    }
    Ok(out)
}

/// The first words of a label, for the ratio column.
fn short(label: &str) -> &str {
    label.split(" (").next().unwrap_or(label)
}

fn ms(micros: &Value) -> String {
    micros
        .as_f64()
        .map_or_else(|| "–".to_owned(), |m| format!("{:.2} ms", m / 1000.0))
}

fn outcomes(report: &Value) -> String {
    report["codes"]
        .as_object()
        .map(|codes| {
            codes
                .iter()
                .map(|(code, count)| format!("{code} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn notes(report: &Value) -> String {
    let mut notes = Vec::new();
    let counters = &report["counters"];
    if let Some(undecided) = counters["limiter_undecided"].as_u64() {
        notes.push(format!("limiter undecided {undecided}"));
    }
    if let Some(ratio) = counters["cache_hit_ratio"].as_f64() {
        notes.push(format!("cache hit {:.1}%", ratio * 100.0));
    }
    if let Some(peak) = report["rss"]["peak_kib"].as_u64() {
        let end = report["rss"]["end_kib"].as_u64().unwrap_or(0);
        let start = report["rss"]["samples_kib"][0].as_u64().unwrap_or(0);
        notes.push(format!(
            "RSS at start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
            start as f64 / 1024.0,
            peak as f64 / 1024.0,
            end as f64 / 1024.0
        ));
    }
    if let Some(cpu) = report["cpu_us_per_call"].as_object() {
        let split: Vec<String> = cpu
            .iter()
            .filter_map(|(name, micros)| Some(format!("{name} {:.0}", micros.as_f64()?)))
            .collect();
        notes.push(format!("CPU µs/call: {}", split.join(", ")));
    }
    let upstream = &report["upstream_time_us"];
    if upstream.is_object() {
        notes.push(format!(
            "Envoy upstream time p50 {} p99 {}",
            ms(&upstream["p50"]),
            ms(&upstream["p99"])
        ));
    }
    if let Some(shares) = report["instance_shares"].as_object() {
        let split: Vec<String> = shares
            .values()
            .filter_map(|share| Some(format!("{:.0} %", share.as_f64()? * 100.0)))
            .collect();
        notes.push(format!("served by instance: {}", split.join(" / ")));
    }
    if let Some(retried) = report["envoy_retries"].as_u64() {
        notes.push(format!("Envoy retried {retried}"));
    }
    if let Some(refused) = report["bulkhead_refusals"].as_u64() {
        notes.push(format!("payment bulkhead refused {refused}"));
    }
    // `bench/run --baseline`: the current tree's figures over the older commit's (req/s is the
    // ratio column's).
    let against = &report["against"];
    if let Some(name) = against["name"].as_str() {
        let split: Vec<String> = [
            ("p50", "p50"),
            ("p99", "p99"),
            ("service CPU/call", "service_cpu"),
        ]
        .iter()
        .filter_map(|(label, key)| Some(format!("{label} {:.2}×", against[key].as_f64()?)))
        .collect();
        notes.push(format!("÷ {name}: {}", split.join(", ")));
    }
    if let Some(rounds) = report["rounds_rps"].as_array() {
        let split: Vec<String> = rounds
            .iter()
            .filter_map(|rps| Some(format!("{:.0}", rps.as_f64()?)))
            .collect();
        notes.push(format!("median of rounds of {} req/s", split.join(", ")));
    }
    let roll = &report["rolling_restart"];
    if let Some(seconds) = roll["seconds"].as_f64() {
        let inside = if roll["inside_window"] == true {
            "inside the measured window"
        } else {
            "NOT all inside the measured window"
        };
        notes.push(format!(
            "rolling restart of {} instances in {seconds:.1} s, {inside}",
            roll["instances"]
        ));
    }
    if report["mode"] == "pgbench" {
        notes.push(format!(
            "tps; mean latency {}",
            ms(&report["latency_us"]["mean"])
        ));
    }
    notes.join("; ")
}

/// `pNN<=ratio` or `pNN<=X*ratio` (NN: 50 or 99): the report's key of that percentile and the
/// factor on the other row's.
fn latency_bound(target: &str) -> Option<(&'static str, f64)> {
    let (percentile, bound) = target.split_once("<=")?;
    let percentile = match percentile {
        "p50" => "p50",
        "p99" => "p99",
        _ => return None,
    };
    let factor = bound.strip_suffix("ratio")?;
    let factor = match factor.strip_suffix('*') {
        Some(factor) => factor.parse().ok()?,
        None if factor.is_empty() => 1.0,
        None => return None,
    };
    Some((percentile, factor))
}

/// Checks one target against a report: `✓ target`, or `✗ target (actual)`. Targets that compare
/// with another row: `ratio>=X` (req/s against the row of the ratio column), `p99<=ratio` (p99 at
/// most that row's; `p50<=1.1*ratio`: p50 at most 1.1 times that row's), `cpu.NAME<=X*KEY` (CPU µs per call of process NAME at most X times that of
/// row KEY's; `load` reads a row's report).
fn check(
    target: &str,
    report: &Value,
    other: Option<&Value>,
    load: &dyn Fn(&str) -> Option<Value>,
) -> String {
    let verdict = |passed: Option<bool>, actual: String| match passed {
        Some(true) => format!("✓ {target}"),
        Some(false) => format!("✗ {target} ({actual})"),
        None => format!("? {target} (not measured)"),
    };
    match target {
        "errors=0" => {
            let errors = report["errors"].as_u64();
            verdict(errors.map(|e| e == 0), format!("{}", errors.unwrap_or(0)))
        }
        "undecided=0" => {
            let undecided = report["counters"]["limiter_undecided"].as_u64();
            verdict(
                undecided.map(|u| u == 0),
                format!("{}", undecided.unwrap_or(0)),
            )
        }
        _ => {
            if let Some(min) = target.strip_prefix("hit>=") {
                let ratio = report["counters"]["cache_hit_ratio"].as_f64();
                let min: f64 = min.parse().unwrap_or(1.0);
                verdict(
                    ratio.map(|r| r >= min),
                    format!("{:.3}", ratio.unwrap_or(0.0)),
                )
            } else if let Some(max) = target
                .strip_prefix("p99<")
                .and_then(|t| t.strip_suffix("ms"))
            {
                let p99 = report["latency_us"]["p99"].as_f64();
                let max: f64 = max.parse().unwrap_or(0.0);
                verdict(
                    p99.map(|p| p < max * 1000.0),
                    format!("{:.2} ms", p99.unwrap_or(0.0) / 1000.0),
                )
            } else if let Some(min) = target.strip_prefix("ratio>=") {
                let min: f64 = min.parse().unwrap_or(f64::INFINITY);
                let ratio =
                    other.and_then(|other| Some(report["rps"].as_f64()? / other["rps"].as_f64()?));
                verdict(
                    ratio.map(|r| r >= min),
                    format!("{:.2}", ratio.unwrap_or(0.0)),
                )
            } else if let Some((percentile, factor)) = latency_bound(target) {
                let latency = |r: &Value| r["latency_us"][percentile].as_f64();
                let both = latency(report).zip(other.and_then(latency));
                verdict(
                    both.map(|(mine, theirs)| mine <= factor * theirs),
                    both.map_or_else(String::new, |(mine, theirs)| {
                        format!("{:.2} ms against {:.2} ms", mine / 1000.0, theirs / 1000.0)
                    }),
                )
            } else if let Some((name, bound)) = target
                .strip_prefix("cpu.")
                .and_then(|rest| rest.split_once("<="))
            {
                let (factor, key) = bound.split_once('*').unwrap_or(("1", bound));
                let factor: f64 = factor.parse().unwrap_or(0.0);
                let cpu = |r: &Value| r["cpu_us_per_call"][name].as_f64();
                let both = cpu(report).zip(load(key).as_ref().and_then(cpu));
                verdict(
                    both.map(|(mine, floor)| mine <= factor * floor),
                    both.map_or_else(String::new, |(mine, floor)| format!("{:.2}×", mine / floor)),
                )
            } else {
                format!("? {target}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{check, notes};

    fn report(rps: f64, p99_us: f64, envoy_us: f64) -> serde_json::Value {
        serde_json::json!({
            "rps": rps,
            "latency_us": {"p99": p99_us},
            "cpu_us_per_call": {"envoy": envoy_us},
        })
    }

    #[test]
    fn targets_against_other_rows_compare_rate_p99_and_cpu() {
        let express = report(4000.0, 20_000.0, 0.0);
        let floor = report(5000.0, 9_000.0, 200.0);
        let load = |key: &str| (key == "floor").then(|| floor.clone());
        let fast = report(5000.0, 15_000.0, 240.0);
        assert_eq!(
            check("ratio>=1.2", &fast, Some(&express), &load),
            "✓ ratio>=1.2"
        );
        assert_eq!(
            check("p99<=ratio", &fast, Some(&express), &load),
            "✓ p99<=ratio"
        );
        assert_eq!(
            check("cpu.envoy<=1.25*floor", &fast, None, &load),
            "✓ cpu.envoy<=1.25*floor"
        );
        let slow = report(4400.0, 25_000.0, 300.0);
        assert_eq!(
            check("ratio>=1.2", &slow, Some(&express), &load),
            "✗ ratio>=1.2 (1.10)"
        );
        assert_eq!(
            check("p99<=ratio", &slow, Some(&express), &load),
            "✗ p99<=ratio (25.00 ms against 20.00 ms)"
        );
        assert_eq!(
            check("cpu.envoy<=1.25*floor", &slow, None, &load),
            "✗ cpu.envoy<=1.25*floor (1.50×)"
        );
    }

    #[test]
    fn latencies_compare_with_the_other_row_by_a_factor() {
        let report = |p50_us: f64, p99_us: f64| serde_json::json!({"latency_us": {"p50": p50_us, "p99": p99_us}});
        let load = |_: &str| None;
        let baseline = report(1_000.0, 10_000.0);
        let slower = report(1_080.0, 12_000.0);
        assert_eq!(
            check("p50<=1.1*ratio", &slower, Some(&baseline), &load),
            "✓ p50<=1.1*ratio"
        );
        assert_eq!(
            check("p99<=1.1*ratio", &slower, Some(&baseline), &load),
            "✗ p99<=1.1*ratio (12.00 ms against 10.00 ms)"
        );
        assert_eq!(
            check("p50<=ratio", &slower, Some(&baseline), &load),
            "✗ p50<=ratio (1.08 ms against 1.00 ms)"
        );
        assert_eq!(
            check("p90<=ratio", &slower, Some(&baseline), &load),
            "? p90<=ratio"
        );
    }

    #[test]
    fn a_report_against_an_older_commit_says_each_figure_over_its() {
        let report = serde_json::json!({
            "against": {"name": "ca81373", "rps": 0.97, "p50": 1.03, "p99": 1.2, "service_cpu": null},
        });
        assert_eq!(notes(&report), "÷ ca81373: p50 1.03×, p99 1.20×");
    }

    #[test]
    fn a_fleet_report_says_how_the_instances_shared_the_load_and_what_envoy_hid() {
        let report = serde_json::json!({
            "instance_shares": {"127.0.0.1:1": 0.34, "127.0.0.1:2": 0.33, "127.0.0.1:3": 0.33},
            "envoy_retries": 17,
            "bulkhead_refusals": 17,
            "rounds_rps": [1130.2, 1255.0, 1266.4],
        });
        assert_eq!(
            notes(&report),
            "served by instance: 34 % / 33 % / 33 %; Envoy retried 17; \
             payment bulkhead refused 17; median of rounds of 1130, 1255, 1266 req/s"
        );
    }

    #[test]
    fn a_rolling_restart_outside_the_measured_window_is_called_out() {
        let inside = serde_json::json!({
            "rolling_restart": {"instances": 3, "seconds": 12.2, "inside_window": true}
        });
        let outside = serde_json::json!({
            "rolling_restart": {"instances": 3, "seconds": 41.0, "inside_window": false}
        });
        assert_eq!(
            notes(&inside),
            "rolling restart of 3 instances in 12.2 s, inside the measured window"
        );
        assert_eq!(
            notes(&outside),
            "rolling restart of 3 instances in 41.0 s, NOT all inside the measured window"
        );
    }
}
