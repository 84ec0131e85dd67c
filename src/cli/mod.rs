//! The command line: `serve` (the default), `migrate`, `seed-demo`, `create-account`,
//! `quarantined-webhooks`, `descriptor`, `openapi`, `retry-rule` and `envoy-config` for operators, and two clients of a running service for scripts (the local run
//! command, container health checks): `healthcheck` and `login`.

pub mod client;
pub mod envoy_config;
pub mod seed;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::app::lifecycle::shutdown_signal;
use crate::app::startup::Application;
use crate::app::telemetry::{
    get_subscriber, get_subscriber_with_traces, init_subscriber, shutdown_traces, start_traces,
};
use crate::configuration::Settings;
use crate::db;
use crate::wire::proto;

/// What `supportdesk --version` prints after the name: the crate's version and the git revision
/// the binary was built from (build.rs: the checkout's HEAD, else `SUPPORTDESK_GIT_REVISION`,
/// else `unknown`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("SUPPORTDESK_GIT_REVISION"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "supportdesk",
    version = VERSION,
    about = "Support-desk service (gRPC; REST through Envoy)"
)]
pub struct Cli {
    /// A dotenv-style file of settings; environment variables take precedence over it.
    #[arg(long, global = true, env = "SUPPORTDESK_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC on GRPC_LISTEN_ADDR until SIGTERM or SIGINT (the default).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate {
        /// First create DATABASE_URL's database when the server does not have it (connecting to
        /// the server's `postgres` database as the same user).
        #[arg(long)]
        create_database: bool,
    },
    /// Create the demo account (slug `demo`, admin admin@demo.example / supportdesk-demo, and a
    /// customer customer@demo.example to charge) if it is missing; print the account's id on the
    /// first line and the demo customer's user id on the second.
    SeedDemo {
        /// Also fill the demo account up to this many generated tickets (e.g. 100000), to try
        /// listing and filtering on a realistic amount of data.
        #[arg(long, default_value_t = 0)]
        tickets: u32,
    },
    /// Create an account with its first admin and print the account's id. The admin's password
    /// is read from SUPPORTDESK_ADMIN_PASSWORD, or else from the first line of standard input.
    CreateAccount {
        /// The organisation's name.
        #[arg(long)]
        name: String,
        /// The account's unique handle, used to log in (lower-case letters, digits, hyphens).
        #[arg(long)]
        slug: String,
        /// The first admin's email address.
        #[arg(long)]
        admin_email: String,
        /// The first admin's display name.
        #[arg(long, default_value = "")]
        admin_name: String,
    },
    /// Print the most recently quarantined webhook events, one per line, newest first (tab
    /// separated: when, event id, type, reason, the account and charge the metadata names, the
    /// payment, the payment's account and charge or `-`). Such events were applied to no charge
    /// and are shown to no account (docs/webhooks.md, "Quarantine").
    QuarantinedWebhooks {
        /// How many to print.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
    /// Write the encoded descriptor set (for Envoy's transcoder) to a file.
    Descriptor {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the OpenAPI 3.1 document of the REST API, generated from the descriptor set, the
    /// method table and docs/http-contract.md's contract table (docs/openapi.md). Needs no
    /// settings. `docs/openapi.json` is its output: regenerate it with
    /// `cargo run -- openapi --out docs/openapi.json`.
    Openapi {
        /// Where to write it; standard output when not given.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the retry rule generated from the method table's `retry` declarations
    /// (docs/deployment.md, "Retries"): Envoy's retry routes, or with `--service-config` the gRPC
    /// service config recommended to clients that call the instances directly. Needs no
    /// settings. `envoy-config` writes the routes into Envoy's configuration.
    RetryRule {
        /// Print the service config (JSON) instead of Envoy's routes.
        #[arg(long)]
        service_config: bool,
    },
    /// Write Envoy's configuration for a deployment shape: deploy/envoy/envoy.yaml (built into
    /// the binary) with the settings below, the retry routes of the method table, the plain GET
    /// routes and the Lua filter's REST tables of the OpenAPI document (docs/deployment.md,
    /// "Envoy's configuration"). Reads CORS_ALLOWED_ORIGINS, ROUTE_TIMEOUT_SECS,
    /// SHUTDOWN_DELAY_MS, UPSTREAM_ADDRESSES, STREAM_INSTANCES, WATCH_MAX_STREAMS_PER_INSTANCE,
    /// EXPORT_MAX_CONCURRENT_PER_INSTANCE, WATCH_MAX_DURATION_SECS, EXPORT_MAX_DURATION_SECS and
    /// WATCH_HEARTBEAT_SECS from the environment; exits 2 naming a setting it refuses. Needs no
    /// other settings.
    EnvoyConfig(envoy_config::EnvoyConfigArgs),
    /// Ask a running service's `grpc.health.v1.Health/Check`; exit 0 when it answers SERVING,
    /// else 1 with what it answered. Needs no settings.
    Healthcheck {
        /// The service's gRPC address.
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        /// The service to ask about (`supportdesk.v1.TicketService`, ...); empty: the whole server.
        #[arg(long, default_value = "")]
        service: String,
        /// Keep asking, every 200 ms, for up to this many seconds before giving up.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Log in to a running service (AuthService/Login) and print the access token. The password
    /// is read from SUPPORTDESK_PASSWORD, or else from the first line of standard input. Needs
    /// no settings.
    Login {
        /// The service's gRPC address.
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        /// The account's slug.
        #[arg(long)]
        account: String,
        /// The user's email address.
        #[arg(long)]
        email: String,
    },
}

/// Runs the command; configuration and start-up errors end the process with code 1 and a
/// message naming the problem.
pub fn run(cli: Cli) -> ExitCode {
    let command = match cli.command.unwrap_or(Command::Serve) {
        Command::Descriptor { out } => {
            return match std::fs::write(&out, proto::FILE_DESCRIPTOR_SET) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("supportdesk: cannot write {}: {error}", out.display());
                    ExitCode::FAILURE
                }
            };
        }
        Command::Openapi { out } => return write_openapi(out.as_deref()),
        Command::RetryRule { service_config } => return retry_rule(service_config),
        Command::EnvoyConfig(arguments) => return envoy_config::run(&arguments),
        Command::Healthcheck {
            addr,
            service,
            wait,
        } => {
            return as_client(client::healthcheck(
                &addr,
                service,
                Duration::from_secs(wait),
            ));
        }
        Command::Login {
            addr,
            account,
            email,
        } => {
            return as_client(async move {
                let password = secret_input("SUPPORTDESK_PASSWORD", "the password")?;
                let token = client::login(&addr, account, email, password).await?;
                println!("{token}");
                Ok(())
            });
        }
        command @ (Command::Serve
        | Command::Migrate { .. }
        | Command::SeedDemo { .. }
        | Command::CreateAccount { .. }
        | Command::QuarantinedWebhooks { .. }) => command,
    };
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("supportdesk: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = settings.server.worker_threads {
        runtime.worker_threads(workers.get());
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("supportdesk: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporter's channel lives on the runtime, so it is built inside it.
    let tracer = match settings.traces.as_ref().map(|traces| {
        let _inside = runtime.enter();
        start_traces(traces)
    }) {
        None => None,
        Some(Ok(tracer)) => Some(tracer),
        Some(Err(error)) => {
            eprintln!("supportdesk: cannot start the trace exporter: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    init_subscriber(match tracer {
        Some(tracer) => get_subscriber_with_traces(
            &settings.log.filter,
            settings.log.format,
            std::io::stdout,
            tracer,
        ),
        None => get_subscriber(&settings.log.filter, settings.log.format, std::io::stdout),
    });
    let outcome = runtime.block_on(async {
        let outcome = execute(command, settings).await;
        shutdown_traces().await;
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = ?error, "supportdesk failed");
            eprintln!("supportdesk: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let application = Application::build(settings).await?;
            application.run_until_stopped(shutdown_signal()).await
        }
        Command::Migrate { create_database } => {
            if create_database && db::create_database_if_missing(&settings.database.url).await? {
                tracing::info!("database created");
            }
            let applied = db::run_migrations(settings.database.url.clone()).await?;
            tracing::info!(count = applied.len(), ?applied, "migrations applied");
            report_undeliverable_addresses(&settings).await
        }
        Command::SeedDemo { tickets } => {
            let pool = db::build_pool(&settings.database, settings.server.request_timeout);
            let demo = seed::seed_demo(&pool).await?;
            if tickets > 0 {
                let added = seed::seed_demo_tickets(&pool, demo.account_id, tickets).await?;
                tracing::info!(added, "demo tickets generated");
            }
            println!("{}", demo.account_id);
            println!("{}", demo.customer_id);
            Ok(())
        }
        Command::CreateAccount {
            name,
            slug,
            admin_email,
            admin_name,
        } => {
            let password = secret_input("SUPPORTDESK_ADMIN_PASSWORD", "the admin's password")?;
            let pool = db::build_pool(&settings.database, settings.server.request_timeout);
            let (account, admin) = seed::create_account(
                &pool,
                seed::AccountInput {
                    name: &name,
                    slug: &slug,
                    admin_email: &admin_email,
                    admin_password: &password,
                    admin_display_name: &admin_name,
                },
            )
            .await?;
            tracing::info!(account_id = %account.id, admin_id = %admin.id, "account created");
            println!("{}", account.id);
            Ok(())
        }
        Command::QuarantinedWebhooks { limit } => {
            let pool = db::build_pool(&settings.database, settings.server.request_timeout);
            let mut conn = db::connection(&pool).await?;
            let optional =
                |id: Option<uuid::Uuid>| id.map_or_else(|| "-".to_owned(), |id| id.to_string());
            for event in db::models::webhook_event_quarantine::most_recent(&mut conn, limit).await?
            {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    event.quarantined_at.to_rfc3339(),
                    event.event_id,
                    event.event_type.escape_debug(),
                    event.reason,
                    event.named_account_id,
                    event.named_charge_id,
                    event.payment_id,
                    optional(event.payment_account_id),
                    optional(event.payment_charge_id),
                );
            }
            Ok(())
        }
        Command::Descriptor { .. }
        | Command::Openapi { .. }
        | Command::RetryRule { .. }
        | Command::EnvoyConfig(_)
        | Command::Healthcheck { .. }
        | Command::Login { .. } => {
            unreachable!("handled before settings are loaded")
        }
    }
}

/// Logs (WARN, one line each) the stored addresses that the address rule in force refuses for
/// new input: users stored under an earlier, looser rule. They stay readable and can log in; mail
/// to them cannot be sent, so an operator may want to ask them for another address.
async fn report_undeliverable_addresses(settings: &Settings) -> anyhow::Result<()> {
    let pool = db::build_pool(&settings.database, settings.server.request_timeout);
    let mut conn = db::connection(&pool).await?;
    let mut undeliverable = 0usize;
    for user in db::models::UserRow::with_unusual_address(&mut conn).await? {
        if let Err(problem) = crate::domain::Email::parse(user.email.as_str()) {
            undeliverable += 1;
            tracing::warn!(
                account_id = %user.account_id,
                user_id = %user.id,
                address = %user.email,
                %problem,
                "a stored address the address rule refuses for new input: mail to it cannot be sent"
            );
        }
    }
    tracing::info!(
        undeliverable,
        "stored addresses checked against the address rule"
    );
    Ok(())
}

/// Writes the OpenAPI document to `out` (standard output when `None`).
fn write_openapi(out: Option<&std::path::Path>) -> ExitCode {
    let text = match crate::wire::openapi::render() {
        Ok(text) => text,
        Err(error) => {
            eprintln!("supportdesk: {error}");
            return ExitCode::FAILURE;
        }
    };
    let written = match out {
        Some(path) => std::fs::write(path, text)
            .map_err(|error| format!("cannot write {}: {error}", path.display())),
        None => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|error| format!("cannot write the document: {error}"))
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("supportdesk: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the retry rule: Envoy's routes (YAML, at the default deadline of 15 s) or the service
/// config of direct clients (JSON).
fn retry_rule(service_config: bool) -> ExitCode {
    use crate::wire::retry_rule::RetryRule;
    let table = match crate::wire::methods::MethodTable::get() {
        Ok(table) => table,
        Err(error) => {
            eprintln!("supportdesk: {error}");
            return ExitCode::FAILURE;
        }
    };
    let rule = RetryRule::of(table);
    if service_config {
        println!("{:#}", rule.service_config());
        return ExitCode::SUCCESS;
    }
    match serde_norway::to_string(&rule.envoy_routes("15s", "5.000s")) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("supportdesk: cannot write the routes: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a client command on a small runtime; its error is printed and exits 1.
fn as_client(work: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(work));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("supportdesk: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A secret from the environment variable `variable`, or the first line of standard input (so
/// that it never appears in the process list or shell history).
fn secret_input(variable: &str, what: &str) -> anyhow::Result<String> {
    if let Ok(secret) = std::env::var(variable) {
        return Ok(secret);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let secret = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(
        !secret.is_empty(),
        "give {what} in {variable} or on standard input"
    );
    Ok(secret)
}
