//! The command line: `serve` (the default), `migrate`, `seed-demo` and `descriptor`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::configuration::Settings;
use crate::startup::{Application, shutdown_signal};
use crate::telemetry::{get_subscriber, init_subscriber};
use crate::{db, proto, seed};

#[derive(Debug, Parser)]
#[command(
    name = "supportdesk",
    version,
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
    Migrate,
    /// Create the demo account if it is missing and print its id.
    SeedDemo,
    /// Write the encoded descriptor set (for Envoy's transcoder) to a file.
    Descriptor {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs the command; configuration and start-up errors end the process with code 1 and a
/// message naming the problem.
pub fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Descriptor { out } = &command {
        return match std::fs::write(out, proto::FILE_DESCRIPTOR_SET) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("supportdesk: cannot write {}: {error}", out.display());
                ExitCode::FAILURE
            }
        };
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("supportdesk: {error}");
            return ExitCode::FAILURE;
        }
    };
    init_subscriber(get_subscriber(
        &settings.log.filter,
        settings.log.format,
        std::io::stdout,
    ));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("supportdesk: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(command, settings)) {
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
        Command::Migrate => {
            let applied = db::run_migrations(settings.database.url.clone()).await?;
            tracing::info!(count = applied.len(), ?applied, "migrations applied");
            Ok(())
        }
        Command::SeedDemo => {
            let pool = db::build_pool(&settings.database);
            let account_id = seed::seed_demo_account(&pool).await?;
            println!("{account_id}");
            Ok(())
        }
        Command::Descriptor { .. } => unreachable!("handled before settings are loaded"),
    }
}
