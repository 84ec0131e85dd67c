//! The `supportdesk` binary: parses the command line and hands over to [`supportdesk::cli`].

use clap::Parser;

/// mimalloc, not glibc's malloc: glibc keeps freed memory in per-thread arenas (argon2's 19 MiB
/// blocks, request buffers), which held the service at 300 MiB resident after a few hundred
/// logins; mimalloc returns it (docs/performance.md, "Memory").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    disable_transparent_huge_pages();
    supportdesk::cli::run(supportdesk::cli::Cli::parse())
}

/// mimalloc asks for transparent huge pages on its arenas, and a 2 MiB huge page is resident
/// as a whole once any byte of it is touched: under load the service's resident memory depended
/// on whether the kernel found free huge pages, and nearly doubled when it did
/// (docs/performance.md, "Memory", has the figures). Resident memory that depends on luck
/// cannot be budgeted. The flag is the process's, so every
/// thread and arena is covered; where the kernel refuses the call (no THP, or a sandbox), there
/// is nothing to turn off.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}
