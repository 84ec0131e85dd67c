//! A real SMTP server for the notification tests: aiosmtpd (installed by deploy/local/setup,
//! `AIOSMTPD_BIN`), one per test on a port of its own, writing every message it accepts to a
//! fresh maildir that the tests read back.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mailparse::MailHeaderMap;
use tokio::process::{Child, Command};

use super::{ClosedPort, PATIENCE, tool, wait_until};

/// The server's port, and the server itself while it runs.
pub(crate) struct SmtpServer {
    pub(crate) port: u16,
    workdir: tempfile::TempDir,
    /// The handler class (`module.Class`), given the maildir.
    handler: &'static str,
    process: Option<Child>,
    /// The port, held closed while no server runs on it.
    closed: Option<ClosedPort>,
}

/// A message as the server received it.
pub(crate) struct Received {
    /// The raw bytes (headers and body).
    pub(crate) raw: Vec<u8>,
}

impl Received {
    pub(crate) fn parsed(&self) -> mailparse::ParsedMail<'_> {
        mailparse::parse_mail(&self.raw).expect("a message that parses")
    }

    /// Every value of header `name` (case-insensitive).
    pub(crate) fn headers(&self, name: &str) -> Vec<String> {
        self.parsed().headers.get_all_values(name)
    }

    /// The one value of header `name`.
    pub(crate) fn header(&self, name: &str) -> String {
        let values = self.headers(name);
        assert_eq!(values.len(), 1, "{name}: {values:?}");
        values.into_iter().next().unwrap()
    }

    /// The envelope's recipients, as the server recorded them (`X-RcptTo`).
    pub(crate) fn envelope_recipients(&self) -> Vec<String> {
        self.header("X-RcptTo")
            .split(',')
            .map(|recipient| recipient.trim().to_owned())
            .collect()
    }

    /// The decoded body of the part of type `mime` (`text/plain`, `text/html`), its line endings
    /// as written (mail carries CRLF).
    pub(crate) fn part(&self, mime: &str) -> String {
        let parsed = self.parsed();
        let found = parsed
            .subparts
            .iter()
            .find(|part| part.ctype.mimetype == mime)
            .unwrap_or_else(|| panic!("no {mime} part"));
        found
            .get_body()
            .expect("a decodable body")
            .replace("\r\n", "\n")
    }
}

impl SmtpServer {
    /// A port of its own with no server on it yet: connections to it are refused until
    /// [`SmtpServer::start`] starts one there.
    pub(crate) fn reserve() -> Self {
        let closed = ClosedPort::new();
        Self {
            port: closed.port,
            workdir: tempfile::tempdir().expect("a temporary directory"),
            handler: "aiosmtpd.handlers.Mailbox",
            process: None,
            closed: Some(closed),
        }
    }

    /// A running server on a free port.
    pub(crate) async fn start_new() -> Self {
        let mut server = Self::reserve();
        server.start().await;
        server
    }

    /// A running server on a free port whose handler answers some recipients itself:
    /// `gone@...` is refused for good (550), `busy@...` is told to come back later (450)
    /// `busy_answers` times, and `blocked@...` meets the relay's policy refusing the sender (554
    /// 5.7.1, as when the service's address is on a blocklist); everything else is accepted
    /// into the maildir.
    pub(crate) async fn start_refusing(busy_answers: u32) -> Self {
        let mut server = Self::reserve();
        std::fs::write(
            server.workdir.path().join("refusing.py"),
            format!(
                r#"from aiosmtpd.handlers import Mailbox


class Refusing(Mailbox):
    busy_left = {busy_answers}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone@"):
            return "550 5.1.1 No such mailbox here"
        if address.startswith("blocked@"):
            return "554 5.7.1 Service unavailable; client host blocked using a blocklist"
        if address.startswith("sender-refused@"):
            return "550 5.1.8 Access denied, bad outbound sender"
        if address.startswith("busy@") and Refusing.busy_left > 0:
            Refusing.busy_left -= 1
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"
"#
            ),
        )
        .expect("the handler is written");
        server.handler = "refusing.Refusing";
        server.start().await;
        server
    }

    /// A running server on a free port that keeps every message it is sent, writes the file
    /// [`SmtpServer::stalled`] looks for, and only `confirm_after` later answers that it took
    /// it: a client stopped in that time has had its message delivered without being told.
    pub(crate) async fn start_slow_to_confirm(confirm_after: Duration) -> Self {
        let mut server = Self::reserve();
        let marker = server.workdir.path().join("stalled");
        std::fs::write(
            server.workdir.path().join("slow_to_confirm.py"),
            format!(
                r#"import asyncio

from aiosmtpd.handlers import Mailbox


class SlowToConfirm(Mailbox):
    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        open({marker:?}, "w").close()
        await asyncio.sleep({seconds})
        return answer
"#,
                marker = marker.display().to_string(),
                seconds = confirm_after.as_secs_f64(),
            ),
        )
        .expect("the handler is written");
        server.handler = "slow_to_confirm.SlowToConfirm";
        server.start().await;
        server
    }

    /// A running server on a free port that accepts every message into the maildir and, while
    /// switched slow ([`SmtpServer::slow`]), answers the end of each message's data only
    /// `confirm_after` later: a relay that has a message and has not said so. Each message it
    /// holds and each it then answers is a line of its own in a file ([`SmtpServer::held`]), so a
    /// test waits for what happened rather than for a time.
    pub(crate) async fn start_slow_when_switched(confirm_after: Duration) -> Self {
        let mut server = Self::reserve();
        let switch = server.workdir.path().join("slow");
        let held = server.workdir.path().join("held");
        std::fs::write(
            server.workdir.path().join("slow_when_switched.py"),
            format!(
                r#"import asyncio
import os

from aiosmtpd.handlers import Mailbox


class SlowWhenSwitched(Mailbox):
    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        if os.path.exists({switch:?}):
            with open({held:?}, "a") as held:
                held.write("held\n")
            try:
                await asyncio.sleep({seconds})
            finally:
                # Answered, or its client went away first (the wait is cancelled then).
                with open({held:?}, "a") as held:
                    held.write("answered\n")
        return answer
"#,
                switch = switch.display().to_string(),
                held = held.display().to_string(),
                seconds = confirm_after.as_secs_f64(),
            ),
        )
        .expect("the handler is written");
        server.handler = "slow_when_switched.SlowWhenSwitched";
        server.start().await;
        server
    }

    /// Switches a [`SmtpServer::start_slow_when_switched`] server slow (each message's end of
    /// data answered late from the next one on) or back to answering at once (a message already
    /// held is still answered late).
    pub(crate) fn slow(&self, slow: bool) {
        let switch = self.workdir.path().join("slow");
        if slow {
            std::fs::write(switch, b"").expect("switch the relay slow");
        } else {
            std::fs::remove_file(switch).expect("switch the relay back");
        }
    }

    /// How many messages a [`SmtpServer::start_slow_when_switched`] server has held, and how
    /// many of them it has answered since (or whose client went away first).
    pub(crate) fn held(&self) -> (usize, usize) {
        let lines = std::fs::read_to_string(self.workdir.path().join("held")).unwrap_or_default();
        (
            lines.lines().filter(|line| *line == "held").count(),
            lines.lines().filter(|line| *line == "answered").count(),
        )
    }

    /// A running server on a free port that answers the end of the first message to `slow@...`
    /// only `confirm_after` later (accepting it, then writing the file [`SmtpServer::answered_late`]
    /// looks for, also when the client went away first), refuses every message to `spam@...` at the end of its data (554 5.6.0), and
    /// accepts everything else at once.
    pub(crate) async fn start_slow_once_and_refusing_spam(confirm_after: Duration) -> Self {
        let mut server = Self::reserve();
        let marker = server.workdir.path().join("answered_late");
        std::fs::write(
            server.workdir.path().join("slow_once.py"),
            format!(
                r#"import asyncio

from aiosmtpd.handlers import Mailbox


class SlowOnce(Mailbox):
    slowed = False

    async def handle_DATA(self, server, session, envelope):
        if any(rcpt.startswith("spam@") for rcpt in envelope.rcpt_tos):
            return "554 5.6.0 Message content rejected"
        answer = await super().handle_DATA(server, session, envelope)
        if not SlowOnce.slowed and any(rcpt.startswith("slow@") for rcpt in envelope.rcpt_tos):
            SlowOnce.slowed = True
            try:
                await asyncio.sleep({seconds})
            finally:
                # Answered, or its client went away first (the wait is cancelled then).
                open({marker:?}, "w").close()
        return answer
"#,
                marker = marker.display().to_string(),
                seconds = confirm_after.as_secs_f64(),
            ),
        )
        .expect("the handler is written");
        server.handler = "slow_once.SlowOnce";
        server.start().await;
        server
    }

    /// Whether a [`SmtpServer::start_slow_once_and_refusing_spam`] server has answered its slow
    /// message, or its client closed the connection before the answer was due.
    pub(crate) fn answered_late(&self) -> bool {
        self.workdir.path().join("answered_late").exists()
    }

    /// A running server on a free port that holds its first conversation open forever, at the
    /// recipient (after writing the file [`SmtpServer::stalled`] looks for), and accepts every
    /// later one: what a client killed in the middle of a conversation leaves behind.
    pub(crate) async fn start_stalling() -> Self {
        let mut server = Self::reserve();
        let marker = server.workdir.path().join("stalled");
        std::fs::write(
            server.workdir.path().join("stalling.py"),
            format!(
                r#"import asyncio

from aiosmtpd.handlers import Mailbox


class Stalling(Mailbox):
    stalled = False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not Stalling.stalled:
            Stalling.stalled = True
            open({marker:?}, "w").close()
            await asyncio.sleep(3600)
        envelope.rcpt_tos.append(address)
        return "250 OK"
"#,
                marker = marker.display().to_string()
            ),
        )
        .expect("the handler is written");
        server.handler = "stalling.Stalling";
        server.start().await;
        server
    }

    /// Whether a conversation of a [`SmtpServer::start_stalling`] server is being held open.
    pub(crate) fn stalled(&self) -> bool {
        self.workdir.path().join("stalled").exists()
    }

    /// Starts the server on the reserved port and waits until it accepts connections. Fails
    /// (never skips) when aiosmtpd is not installed.
    pub(crate) async fn start(&mut self) {
        let binary = tool("AIOSMTPD_BIN");
        assert!(
            binary.exists(),
            "{} is missing: run deploy/local/setup",
            binary.display()
        );
        // Released just before the server binds it: the only moment another bind could take it.
        self.closed.take().map(ClosedPort::release);
        let child = Command::new(&binary)
            .args(["-n", "-l", &format!("127.0.0.1:{}", self.port)])
            .args(["-c", self.handler])
            .arg(self.maildir())
            .env("PYTHONPATH", self.workdir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("{} cannot start: {error}", binary.display()));
        self.process = Some(child);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        wait_until(
            "the SMTP server accepts connections",
            PATIENCE,
            async || tokio::net::TcpStream::connect(address).await.is_ok(),
        )
        .await;
    }

    /// Stops the server: connections to its port are refused until [`SmtpServer::start`] starts
    /// it again, with the messages it accepted kept. No other server of this test process is
    /// given the port meanwhile (ports are handed out once).
    pub(crate) async fn stop(&mut self) {
        let mut process = self.process.take().expect("the SMTP server runs");
        process.kill().await.expect("stop the SMTP server");
    }

    /// Where the server writes what it accepts (it creates the directory itself).
    fn maildir(&self) -> PathBuf {
        self.workdir.path().join("maildir")
    }

    /// Every message received so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        let Ok(entries) = std::fs::read_dir(self.maildir().join("new")) else {
            return Vec::new();
        };
        let mut messages: Vec<Received> = entries
            .map(|entry| Received {
                raw: std::fs::read(entry.expect("an entry").path()).expect("a message file"),
            })
            .collect();
        messages.sort_by(|a, b| a.raw.cmp(&b.raw));
        messages
    }

    /// Waits until `count` messages have arrived, and returns them.
    pub(crate) async fn wait_for(&self, count: usize) -> Vec<Received> {
        wait_until(
            &format!("{count} message(s) received"),
            PATIENCE,
            async || self.received().len() >= count,
        )
        .await;
        self.received()
    }
}

/// The settings that send to `server` (plain SMTP on 127.0.0.1) with quick retries and a breaker
/// that opens after three failures in a row for a quarter of a second.
pub(crate) fn send_to(settings: &mut supportdesk::configuration::Settings, server: &SmtpServer) {
    use supportdesk::configuration::{EmailProviderSettings, EmailSettings, SmtpSettings, SmtpTls};
    settings.notifications.public_base_url =
        Some(url::Url::parse("https://desk.example.com/").unwrap());
    settings.notifications.email = Some(EmailSettings {
        from: "Example Support <support@desk.example.com>".to_owned(),
        reply_to: Some("replies@desk.example.com".to_owned()),
        max_concurrency: 4,
        breaker_failure_threshold: 3,
        breaker_cool_down: Duration::from_millis(250),
        provider: EmailProviderSettings::Smtp(SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port: server.port,
            tls: SmtpTls::None,
            credentials: None,
            timeout: Duration::from_secs(5),
            // The default: RFC 5321 §4.5.3.2.6's ten minutes.
            data_reply_timeout: Duration::from_secs(600),
        }),
    });
    quick_retries(settings);
}

/// The SMTP provider's settings of `settings`, to adjust.
pub(crate) fn smtp_settings(
    settings: &mut supportdesk::configuration::Settings,
) -> &mut supportdesk::configuration::SmtpSettings {
    use supportdesk::configuration::EmailProviderSettings;
    match settings
        .notifications
        .email
        .as_mut()
        .map(|email| &mut email.provider)
    {
        Some(EmailProviderSettings::Smtp(smtp)) => smtp,
        Some(EmailProviderSettings::Http(_)) | None => panic!("send_to first"),
    }
}

/// Notification workers that retry within a fraction of a second, for as long as a test needs.
pub(crate) fn quick_retries(settings: &mut supportdesk::configuration::Settings) {
    let workers = &mut settings.notifications.workers;
    workers.max_attempts = 1_000;
    workers.retry_base = Duration::from_millis(50);
    workers.retry_max = Duration::from_millis(200);
    workers.poll_interval = Duration::from_millis(50);
}
