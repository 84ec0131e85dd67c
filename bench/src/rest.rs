//! HTTP/1.1 keep-alive connections for the REST scenarios (through Envoy) and for reading the
//! service's `/metrics`: one connection per worker, one request at a time, reconnecting after a
//! failure, as a browser or a typical REST client does. The REST scenarios may speak HTTP/2
//! instead (cleartext, prior knowledge), to tell what the downstream codec costs Envoy apart from
//! what the transcoder does.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// An answer: its status, body, and Envoy's upstream time when present.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub upstream_time: Option<Duration>,
}

/// The HTTP version a connection speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HttpVersion {
    /// HTTP/1.1 keep-alive, one request at a time.
    #[default]
    Http1,
    /// HTTP/2 over cleartext TCP with prior knowledge (h2c), one request at a time.
    Http2,
}

enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// One connection to `addr` (`host:port`), reopened when it fails.
pub struct HttpConnection {
    addr: String,
    version: HttpVersion,
    sender: Option<Sender>,
}

impl HttpConnection {
    /// An HTTP/1.1 connection.
    pub async fn open(addr: &str) -> anyhow::Result<Self> {
        Self::open_with(addr, HttpVersion::Http1).await
    }

    pub async fn open_with(addr: &str, version: HttpVersion) -> anyhow::Result<Self> {
        let mut connection = Self {
            addr: addr.to_owned(),
            version,
            sender: None,
        };
        connection.reconnect().await?;
        Ok(connection)
    }

    async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.sender = None;
        let stream = TcpStream::connect(&self.addr)
            .await
            .with_context(|| format!("connect to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let io = TokioIo::new(stream);
        // Each connection task ends when the server closes the connection; the next request
        // reconnects.
        self.sender = Some(match self.version {
            HttpVersion::Http1 => {
                let (sender, connection) =
                    http1::handshake(io).await.context("HTTP/1.1 handshake")?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Sender::Http1(sender)
            }
            HttpVersion::Http2 => {
                let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .context("HTTP/2 handshake")?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Sender::Http2(sender)
            }
        });
        Ok(())
    }

    /// Drops the connection; the next request opens a new one.
    pub fn abandon(&mut self) {
        self.sender = None;
    }

    /// `GET path` with the given headers; reconnects first if the last request failed.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
        self.send(Method::GET, path, headers, Bytes::new()).await
    }

    /// `METHOD path` with the given headers and body (none when empty); reconnects first if the
    /// last request failed.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        let closed = match &self.sender {
            Some(Sender::Http1(sender)) => sender.is_closed(),
            Some(Sender::Http2(sender)) => sender.is_closed(),
            None => true,
        };
        if closed {
            self.reconnect().await?;
        }
        let sender = self.sender.as_mut().context("just connected")?;
        // HTTP/2 carries the authority in the URI (`:authority`), HTTP/1.1 in `host`.
        let mut request = match sender {
            Sender::Http1(_) => Request::builder().uri(path).header("host", &self.addr),
            Sender::Http2(_) => Request::builder().uri(format!("http://{}{path}", self.addr)),
        }
        .method(method);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body))?;
        let result = async {
            let response = match sender {
                Sender::Http1(sender) => {
                    sender.ready().await?;
                    sender.send_request(request).await?
                }
                Sender::Http2(sender) => {
                    sender.ready().await?;
                    sender.send_request(request).await?
                }
            };
            let status = response.status();
            let upstream_time = response
                .headers()
                .get("x-envoy-upstream-service-time")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok())
                .map(Duration::from_millis);
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok(Answer {
                status,
                body,
                upstream_time,
            })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}
