//! A real OTLP receiver for the traces tests: `otlp_receiver.py` beside this file, run by the
//! Python that deploy/local/setup gave grpcio and opentelemetry-proto (`OTLP_PYTHON_BIN`), one per
//! test on a free port. It writes every span it receives to a file as JSON lines, which
//! [`OtlpReceiver::spans`] reads back. A missing Python or package fails the test.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde::Deserialize;

use super::{PATIENCE, repository_root, tool, wait_until};

/// One span as the receiver saw it (ids in lower-case hex).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ReceivedSpan {
    pub(crate) trace_id: String,
    pub(crate) span_id: String,
    /// Empty for a root span.
    pub(crate) parent_span_id: String,
    pub(crate) name: String,
    /// OTLP's `SpanKind`: 2 server, 3 client.
    pub(crate) kind: i32,
    /// OTLP's status code: 0 unset, 1 ok, 2 error.
    pub(crate) status: i32,
    /// The resource's `service.name`.
    pub(crate) service: Option<String>,
    pub(crate) attributes: BTreeMap<String, serde_json::Value>,
}

/// OTLP's span kinds.
pub(crate) const SERVER: i32 = 2;
pub(crate) const CLIENT: i32 = 3;

impl ReceivedSpan {
    /// An attribute as text (strings as they are, numbers written out).
    pub(crate) fn attribute(&self, key: &str) -> Option<String> {
        self.attributes.get(key).map(|value| {
            value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned)
        })
    }
}

/// The receiver process; killed when dropped.
pub(crate) struct OtlpReceiver {
    child: Child,
    port: u16,
    spans_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl OtlpReceiver {
    /// Starts the receiver and waits until it serves.
    pub(crate) fn start() -> Self {
        let python = tool("OTLP_PYTHON_BIN");
        assert!(
            python.exists(),
            "{} is missing: run deploy/local/setup test",
            python.display()
        );
        let dir = tempfile::tempdir().expect("a scratch directory");
        let spans_file = dir.path().join("spans.jsonl");
        let mut child = Command::new(&python)
            .arg(repository_root().join("tests/api/support/otlp_receiver.py"))
            .arg(&spans_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("the receiver's port");
        let port = first.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "the OTLP receiver did not start (said {first:?}): are grpcio and \
                 opentelemetry-proto installed? run deploy/local/setup test"
            )
        });
        Self {
            child,
            port,
            spans_file,
            _dir: dir,
        }
    }

    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` is set to.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far (whole lines only: a batch being written is read next time).
    pub(crate) fn spans(&self) -> Vec<ReceivedSpan> {
        let text = std::fs::read_to_string(&self.spans_file).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
            .map(|line| serde_json::from_str(line).expect("a span the receiver wrote"))
            .collect()
    }

    /// Polls until `done` holds of the spans received, and returns them.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        wait_until(what, PATIENCE, || async { done(&self.spans()) }).await;
        self.spans()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
