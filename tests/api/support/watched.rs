//! Servers a test starts as child processes and kills whole: each runs in a process group of its
//! own beside a watchdog that kills the group once the test binary is gone, so a test that
//! panics or is killed leaves no server behind.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Runs `command_line` (a shell command, its own redirections included) in the background of a
/// new process group whose leader watches this test binary; `what` names it in a failure.
pub(crate) fn spawn_watched(command_line: &str, what: &str) -> Child {
    let script = format!(
        "{command_line} &\nwhile kill -0 {} 2>/dev/null; do sleep 0.5; done\nkill -KILL 0\n",
        std::process::id()
    );
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|error| panic!("bash starts {what}: {error}"))
}

/// Kills the whole group of `process` at once (SIGKILL), as a crash would, and reaps its leader.
pub(crate) fn kill_group(process: &mut Option<Child>) {
    if let Some(mut child) = process.take() {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
}
