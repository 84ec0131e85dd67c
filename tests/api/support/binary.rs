//! The real `supportdesk` binary as the crash and process tests run it: started with `serve` on
//! a test database, killed with SIGKILL or stopped with SIGTERM, its output read back.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use supportdesk::wire::proto::v1::account_service_client::AccountServiceClient;
use supportdesk::wire::proto::v1::auth_service_client::AuthServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::{
    PATIENCE, TEST_FINGERPRINT_KEY, TEST_JWT_SECRET, TestDatabase, TestUser, free_port, redis_url,
    sign_up, tool,
};

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_supportdesk");

/// The binary, started with `serve`; killed (SIGKILL) when dropped. `extra` settings override
/// the defaults below (`REDIS_KEY_PREFIX` included, to restart on the same keys).
///
/// Its output is read as it comes, by a thread per stream: a pipe nobody reads fills up (64 KiB
/// of log lines, a few seconds of request logs) and then every thread of the binary that logs
/// blocks, so a long test would hang instead of failing.
pub(crate) struct Running {
    child: Child,
    pub(crate) port: u16,
    stdout: Option<std::thread::JoinHandle<Vec<String>>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    pub(crate) fn start(database: &TestDatabase, extra: &[(&str, &str)]) -> Self {
        Self::start_with_clock(database, extra, None)
    }

    /// [`Self::start`] with the process's clock shifted by `shift` (libfaketime's relative
    /// offset, `"-2h"`: two hours behind), `LIBFAKETIME_LIB` preloaded into it alone; its
    /// monotonic clock, which timeouts run on, is left alone.
    pub(crate) fn start_with_clock(
        database: &TestDatabase,
        extra: &[(&str, &str)],
        shift: Option<&str>,
    ) -> Self {
        let port = free_port();
        // trust auth ignores the password: it is there to prove it never reaches a log line.
        let url = database.url().expose_secret().replace(
            "postgres://postgres@",
            "postgres://postgres:hunter2-secret@",
        );
        let mut command = Command::new(BINARY);
        command.arg("serve").env_clear();
        if let Some(shift) = shift {
            command
                .env("LD_PRELOAD", tool("LIBFAKETIME_LIB"))
                .env("FAKETIME", shift)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let mut child = command
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", url)
            .env("REDIS_URL", redis_url())
            .env(
                "REDIS_KEY_PREFIX",
                format!("supportdesk-test:{}:", uuid::Uuid::now_v7().simple()),
            )
            .env("JWT_SECRET", TEST_JWT_SECRET)
            .env("IDEMPOTENCY_FINGERPRINT_KEY", TEST_FINGERPRINT_KEY)
            .env("GRPC_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_FORMAT", "json")
            .env("HEALTH_PROBE_INTERVAL_MS", "200")
            .envs(extra.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start supportdesk");
        let stdout = child.stdout.take().map(|stdout| {
            std::thread::spawn(move || {
                BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                    .collect()
            })
        });
        let stderr = child.stderr.take().map(|mut stderr| {
            std::thread::spawn(move || {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut stderr, &mut text).ok();
                text
            })
        });
        Self {
            child,
            port,
            stdout,
            stderr,
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) async fn channel(&self) -> Channel {
        let started = Instant::now();
        loop {
            if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{}", self.port))
                .unwrap()
                .connect()
                .await
            {
                return channel;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the binary did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn health(&self) -> Option<String> {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .connect()
            .await
            .ok()?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .ok()?;
        Some(format!("{:?}", response.into_inner().status()))
    }

    pub(crate) async fn wait_for_health(&self, status: &str) {
        let started = Instant::now();
        while self.health().await.as_deref() != Some(status) {
            assert!(started.elapsed() < PATIENCE, "health never became {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reaps the process: nothing runs after.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("SIGKILL supportdesk");
        let status = self.child.wait().expect("wait for supportdesk");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "killed by SIGKILL"
        );
    }

    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the exit and returns (exit code, stdout lines, stderr).
    pub(crate) fn wait(mut self) -> (Option<i32>, Vec<String>, String) {
        let status = self.child.wait().expect("wait for supportdesk");
        let stdout = self
            .stdout
            .take()
            .map(|reader| reader.join().expect("stdout read"))
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .map(|reader| reader.join().expect("stderr read"))
            .unwrap_or_default();
        (status.code(), stdout, stderr)
    }
}

/// Signs an account up through the running binary and logs its admin in.
pub(crate) async fn sign_up_through(channel: &Channel) -> TestUser {
    sign_up(
        &AccountServiceClient::new(channel.clone()),
        &AuthServiceClient::new(channel.clone()),
    )
    .await
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
