//! `email-simulator`: runs the email API simulator (Resend's dialect) until SIGINT or SIGTERM,
//! printing `listening on <addr>` on stdout once it accepts connections, so scripts can read the
//! port.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use payment_simulator::email::{DEFAULT_EMAIL_API_KEY, EmailSimulator, EmailSimulatorConfig};
use tracing_subscriber::EnvFilter;

/// A local email API speaking Resend's dialect (POST /emails), with faults and a list of what it
/// accepted under /_sim.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "EMAIL_SIM_LISTEN", default_value = "127.0.0.1:12112")]
    listen: SocketAddr,
    /// Accepted API keys (repeat the flag, or comma-separate in the variable).
    #[arg(
        long = "api-key",
        env = "EMAIL_SIM_API_KEYS",
        value_delimiter = ',',
        default_value = DEFAULT_EMAIL_API_KEY
    )]
    api_keys: Vec<String>,
    /// Seconds an idempotency key is kept.
    #[arg(
        long,
        env = "EMAIL_SIM_IDEMPOTENCY_KEY_MAX_AGE_SECS",
        default_value_t = 86_400
    )]
    idempotency_key_max_age_secs: u64,
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
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.api_keys.iter().all(|key| !key.is_empty()),
        "EMAIL_SIM_API_KEYS must not contain an empty key"
    );
    let simulator = EmailSimulator::start(EmailSimulatorConfig {
        listen: cli.listen,
        api_keys: cli.api_keys,
        idempotency_key_max_age: Duration::from_secs(cli.idempotency_key_max_age_secs),
    })
    .await?;
    println!("listening on {}", simulator.addr());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    simulator.shutdown();
    Ok(())
}
