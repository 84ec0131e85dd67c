//! A Redis server of a test's own (`REDIS_SERVER_BIN`, which `deploy/local/setup test` installs), for faults the shared one must not suffer: a restart that loses every key, and a
//! pause (`CLIENT PAUSE`) that holds every client's commands. It keeps nothing on disk, and dies
//! with the test binary (`support::watched`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::watched::{kill_group, spawn_watched};
use crate::support::{ClosedPort, tool};

pub(crate) struct RedisServer {
    pub(crate) port: u16,
    process: Option<Child>,
}

impl RedisServer {
    /// Starts an empty Redis on a port of its own and waits until it answers PING.
    pub(crate) fn start() -> Self {
        let closed = ClosedPort::new();
        let mut server = Self {
            port: closed.port,
            process: None,
        };
        drop(closed);
        server.launch();
        server
    }

    fn launch(&mut self) {
        self.process = Some(spawn_watched(
            &format!(
                "'{}' --bind 127.0.0.1 --port {} --save '' --appendonly no --dir /tmp \
                 --logfile '' >/dev/null 2>&1",
                tool("REDIS_SERVER_BIN").display(),
                self.port
            ),
            "redis-server",
        ));
        let started = Instant::now();
        while self.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "redis-server did not answer on {} within 30 s (is it installed? \
                 deploy/local/setup test installs it)",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills Redis at once (SIGKILL to its process group) and starts an empty one on the same
    /// port: what a crash of a cache without persistence does.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn kill(&mut self) {
        kill_group(&mut self.process);
    }

    /// Holds every client's commands for `duration` (`CLIENT PAUSE <ms> ALL`): Redis keeps its
    /// connections and answers none of them until the pause ends.
    pub(crate) fn pause(&self, duration: Duration) {
        let millis = duration.as_millis().to_string();
        let answer = self.command(&["CLIENT", "PAUSE", &millis, "ALL"]);
        assert_eq!(answer.as_deref(), Some("+OK"), "CLIENT PAUSE");
    }

    /// How many keys Redis holds (`DBSIZE`).
    pub(crate) fn key_count(&self) -> u64 {
        self.command(&["DBSIZE"])
            .and_then(|answer| answer.strip_prefix(':').and_then(|n| n.parse().ok()))
            .expect("DBSIZE answers an integer")
    }

    /// Sends one command over a fresh connection (blocking; this runs outside any runtime or
    /// in `spawn_blocking`) and reads the first line of the answer.
    fn command(&self, words: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", words.len());
        for word in words {
            request.push_str(&format!("${}\r\n{word}\r\n", word.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = [0u8; 64];
        let read = stream.read(&mut answer).ok()?;
        let text = String::from_utf8_lossy(&answer[..read]).into_owned();
        text.lines().next().map(str::to_owned)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
