//! The `supportdesk` binary: parses the command line and hands over to [`supportdesk::cli`].

use clap::Parser;

/// mimalloc, not glibc's malloc: glibc keeps freed memory in per-thread arenas (argon2's 19 MiB
/// blocks, request buffers), which held the service at 300 MiB resident after a few hundred
/// logins; mimalloc returns it (docs/performance.md, "Memory").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    supportdesk::cli::run(supportdesk::cli::Cli::parse())
}
