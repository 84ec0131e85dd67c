//! `payment-simulator`: runs the payment provider simulator until SIGINT or SIGTERM, printing
//! `listening on <addr>` on stdout once it accepts connections, so scripts can read the port.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use payment_simulator::{RetryPolicy, Simulator, SimulatorConfig, WebhookEndpoint};
use tracing_subscriber::EnvFilter;

/// A local payment provider speaking supportdesk's subset of Stripe's API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "PAYMENT_SIM_LISTEN", default_value = "127.0.0.1:12111")]
    listen: SocketAddr,
    /// Accepted secret keys (repeat the flag, or comma-separate in the variable).
    #[arg(
        long = "api-key",
        env = "PAYMENT_SIM_API_KEYS",
        value_delimiter = ',',
        default_value = payment_simulator::DEFAULT_API_KEY
    )]
    api_keys: Vec<String>,
    /// Refuse POSTs that carry no Idempotency-Key.
    #[arg(long, env = "PAYMENT_SIM_REQUIRE_IDEMPOTENCY_KEY")]
    require_idempotency_key: bool,
    /// Seconds after which an idempotency key counts as pruned.
    #[arg(
        long,
        env = "PAYMENT_SIM_IDEMPOTENCY_KEY_MAX_AGE_SECS",
        default_value_t = 86_400
    )]
    idempotency_key_max_age_secs: u64,
    /// Webhook endpoint (http:// only); none sends no webhooks.
    #[arg(long, env = "PAYMENT_SIM_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Webhook signing secrets, `whsec_...` (repeat, or comma-separate in the variable).
    #[arg(
        long = "webhook-secret",
        env = "PAYMENT_SIM_WEBHOOK_SECRETS",
        value_delimiter = ','
    )]
    webhook_secrets: Vec<String>,
    /// Delay before the first webhook retry, doubling after each failure.
    #[arg(long, env = "PAYMENT_SIM_WEBHOOK_RETRY_BASE_MS", default_value_t = 100)]
    webhook_retry_base_ms: u64,
    /// Longest delay between two webhook attempts.
    #[arg(
        long,
        env = "PAYMENT_SIM_WEBHOOK_RETRY_MAX_MS",
        default_value_t = 10_000
    )]
    webhook_retry_max_ms: u64,
    /// Attempts per webhook delivery, the first included.
    #[arg(long, env = "PAYMENT_SIM_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    webhook_max_attempts: u32,
    /// How long one webhook attempt waits for an answer.
    #[arg(long, env = "PAYMENT_SIM_WEBHOOK_TIMEOUT_MS", default_value_t = 5_000)]
    webhook_timeout_ms: u64,
}

impl Cli {
    fn into_config(self) -> anyhow::Result<SimulatorConfig> {
        let webhook_endpoint = match self.webhook_url {
            Some(url) => {
                anyhow::ensure!(
                    url.starts_with("http://"),
                    "PAYMENT_SIM_WEBHOOK_URL must start with http:// (the simulator speaks no TLS)"
                );
                anyhow::ensure!(
                    !self.webhook_secrets.is_empty(),
                    "PAYMENT_SIM_WEBHOOK_URL needs at least one PAYMENT_SIM_WEBHOOK_SECRETS"
                );
                Some(WebhookEndpoint {
                    url,
                    secrets: self.webhook_secrets,
                })
            }
            None => None,
        };
        anyhow::ensure!(
            self.api_keys.iter().all(|key| !key.is_empty()),
            "PAYMENT_SIM_API_KEYS must not contain an empty key"
        );
        anyhow::ensure!(
            self.webhook_max_attempts >= 1,
            "PAYMENT_SIM_WEBHOOK_MAX_ATTEMPTS must be at least 1"
        );
        Ok(SimulatorConfig {
            listen: self.listen,
            api_keys: self.api_keys,
            require_idempotency_key: self.require_idempotency_key,
            idempotency_key_max_age: Duration::from_secs(self.idempotency_key_max_age_secs),
            webhook_endpoint,
            webhook_retry: RetryPolicy {
                base_delay: Duration::from_millis(self.webhook_retry_base_ms),
                max_delay: Duration::from_millis(self.webhook_retry_max_ms),
                max_attempts: self.webhook_max_attempts,
                attempt_timeout: Duration::from_millis(self.webhook_timeout_ms),
            },
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr: stdout carries only the `listening on` line scripts read.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Cli::parse().into_config()?;
    let simulator = Simulator::start(config).await?;
    println!("listening on {}", simulator.addr());
    wait_for_stop_signal().await?;
    simulator.shutdown();
    Ok(())
}

async fn wait_for_stop_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_from(args: &[&str]) -> anyhow::Result<SimulatorConfig> {
        let argv = std::iter::once("payment-simulator").chain(args.iter().copied());
        Cli::try_parse_from(argv)?.into_config()
    }

    #[test]
    fn webhook_flags_become_an_endpoint_with_every_secret() {
        let config = config_from(&[
            "--listen",
            "127.0.0.1:0",
            "--webhook-url",
            "http://127.0.0.1:9/hooks",
            "--webhook-secret",
            "whsec_old",
            "--webhook-secret",
            "whsec_new",
            "--webhook-retry-base-ms",
            "50",
        ])
        .unwrap();
        let endpoint = config.webhook_endpoint.unwrap();
        assert_eq!(endpoint.secrets, ["whsec_old", "whsec_new"]);
        assert_eq!(config.webhook_retry.base_delay, Duration::from_millis(50));
        assert_eq!(config.api_keys, [payment_simulator::DEFAULT_API_KEY]);
    }

    #[test]
    fn a_webhook_url_without_a_secret_or_with_https_is_refused() {
        assert!(config_from(&["--webhook-url", "http://127.0.0.1:9/hooks"]).is_err());
        assert!(
            config_from(&[
                "--webhook-url",
                "https://example.com/hooks",
                "--webhook-secret",
                "whsec_x"
            ])
            .is_err()
        );
    }
}
