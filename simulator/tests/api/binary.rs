//! The built `payment-simulator` binary: prints its address and serves.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn the_binary_prints_its_address_and_serves_the_api_and_control_api() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_payment-simulator"))
        .args(["--listen", "127.0.0.1:0", "--api-key", "sk_test_binary"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    let client = reqwest::Client::new();
    let created = client
        .post(format!("http://{addr}/v1/payment_intents"))
        .bearer_auth("sk_test_binary")
        .header("idempotency-key", "k")
        .body("amount=2000&currency=usd&payment_method=pm_card_visa&confirm=true&metadata[charge_id]=c1")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let summary: serde_json::Value = client
        .get(format!(
            "http://{addr}/_sim/ledger/summary?metadata[charge_id]=c1"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["payment_intents"], 1);
    assert_eq!(summary["succeeded"], 1);
    assert_eq!(summary["amount_received"], 2000);
    child.kill().await.unwrap();
}
