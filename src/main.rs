//! The `supportdesk` binary: parses the command line and hands over to [`supportdesk::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    supportdesk::cli::run(supportdesk::cli::Cli::parse())
}
