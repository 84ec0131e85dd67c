//! A real browser for the tests: headless Chromium (Debian's `chromium`) driven by npm's
//! playwright-core through `tests/browser/drive.cjs`, and the origin its page comes from, a small
//! HTTP server serving `tests/browser/page.html` on a port of its own, so the page's origin is
//! never Envoy's. `deploy/local/setup test` installs the browser, Node and playwright-core and
//! writes their paths into `.tools/env` (CHROMIUM_BIN, NODE_BIN, PLAYWRIGHT_CORE_DIR); a test
//! fails, never skips, without them.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{repository_root, tool};

/// Serves the test page at every path (a favicon request answers 404) until dropped.
pub(crate) struct PageServer {
    /// The page's origin, as the browser sends it in `Origin`: `http://127.0.0.1:<port>`.
    pub(crate) origin: String,
    task: JoinHandle<()>,
}

impl PageServer {
    pub(crate) async fn start() -> Self {
        let page = std::fs::read(repository_root().join("tests/browser/page.html"))
            .expect("read tests/browser/page.html");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the page server");
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let page = page.clone();
                tokio::spawn(async move {
                    // The request head only: the browser sends GETs without bodies.
                    let mut head = Vec::new();
                    let mut buffer = [0_u8; 1024];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => head.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let answer = if head.starts_with(b"GET /favicon.ico ") {
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_vec()
                    } else {
                        let mut answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                             content-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
                            page.len()
                        )
                        .into_bytes();
                        answer.extend_from_slice(&page);
                        answer
                    };
                    let _ = stream.write_all(&answer).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { origin, task }
    }

    /// The page's URL with `query` (names and values, encoded here).
    pub(crate) fn url(&self, query: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&format!("{}/", self.origin)).unwrap();
        url.query_pairs_mut().extend_pairs(query);
        url.into()
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens `url` in a fresh headless Chromium and returns what the page left in `window.__result`
/// (with `console`, the page's console lines, added).
pub(crate) async fn open(url: &str) -> serde_json::Value {
    let driver = tokio::process::Command::new(tool("NODE_BIN"))
        .arg(repository_root().join("tests/browser/drive.cjs"))
        .arg(url)
        .env("CHROMIUM_BIN", tool("CHROMIUM_BIN"))
        .env("PLAYWRIGHT_CORE_DIR", tool("PLAYWRIGHT_CORE_DIR"))
        .kill_on_drop(true)
        .output();
    // The page waits at most 60 s for itself; the browser's start-up comes on top.
    let output = tokio::time::timeout(Duration::from_secs(120), driver)
        .await
        .expect("the browser did not finish within 120 s")
        .expect("start node tests/browser/drive.cjs");
    assert!(
        output.status.success(),
        "the browser driver failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "the driver printed no JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}
