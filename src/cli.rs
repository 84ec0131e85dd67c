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
    /// Create the demo account (slug `demo`, admin admin@demo.example / supportdesk-demo) if it
    /// is missing and print its id.
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
        Command::SeedDemo { tickets } => {
            let pool = db::build_pool(&settings.database);
            let account_id = seed::seed_demo_account(&pool).await?;
            if tickets > 0 {
                let added = seed::seed_demo_tickets(&pool, account_id, tickets).await?;
                tracing::info!(added, "demo tickets generated");
            }
            println!("{account_id}");
            Ok(())
        }
        Command::CreateAccount {
            name,
            slug,
            admin_email,
            admin_name,
        } => {
            let password = admin_password()?;
            let pool = db::build_pool(&settings.database);
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
        Command::Descriptor { .. } => unreachable!("handled before settings are loaded"),
    }
}

/// The new admin's password: from SUPPORTDESK_ADMIN_PASSWORD, or the first line of stdin (so
/// that it never appears in the process list or shell history).
fn admin_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("SUPPORTDESK_ADMIN_PASSWORD") {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "give the admin's password in SUPPORTDESK_ADMIN_PASSWORD or on standard input"
    );
    Ok(password)
}
