//! The alert rules in deploy/prometheus/: valid for promtool, each alert firing and staying quiet
//! on the series its unit tests give, and built only on metrics the service exports.

use std::collections::BTreeSet;

use super::metrics::run_promtool;
use crate::support::{TestApp, repository_root, with_metrics};

const RULES: &str = "deploy/prometheus/alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/alerts.test.yml";

#[test]
fn the_alert_rules_pass_promtool_check_rules() {
    let (passed, said) = run_promtool(&["check", "rules", RULES], "");
    assert!(passed, "promtool check rules failed:\n{said}");
    assert!(said.contains("SUCCESS: 10 rules found"), "{said}");
}

#[test]
fn each_alert_fires_and_stays_quiet_as_its_promtool_unit_tests_say() {
    let (passed, said) = run_promtool(&["test", "rules", RULE_TESTS], "");
    assert!(passed, "promtool test rules failed:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");
}

/// The metric names an expression text mentions (`supportdesk_...`), without the sample
/// suffixes of counters and histograms.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("supportdesk_"))
        .map(|word| {
            ["_total", "_bucket", "_sum", "_count"]
                .into_iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn every_metric_an_alert_reads_is_one_the_service_exports() {
    let app = TestApp::spawn_with(with_metrics).await;
    let ticket = app.create_ticket("alerted").await;
    app.get_ticket(&ticket.id).await.expect("the ticket");
    let address = app.metrics_address.expect("metrics are on");
    let text = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("the metrics endpoint answers")
        .text()
        .await
        .expect("a body");
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_owned)
        .collect();
    let rules = std::fs::read_to_string(repository_root().join(RULES)).expect("alerts.yml");
    // Only the rules, not the comments (which name metrics that do not exist yet).
    let expressions: String = rules
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let read = metric_names(&expressions);
    assert!(!read.is_empty());
    let missing: Vec<&String> = read.difference(&exported).collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
}
