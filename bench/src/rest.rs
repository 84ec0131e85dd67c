//! HTTP/1.1 keep-alive connections for the REST scenarios (through Envoy) and for reading the
//! service's `/metrics`: one connection per worker, one request at a time, reconnecting after a
//! failure, as a browser or a typical REST client does.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// An answer: its status, body, and Envoy's upstream time when present.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub upstream_time: Option<Duration>,
}

/// One HTTP/1.1 connection to `addr` (`host:port`), reopened when it fails.
pub struct HttpConnection {
    addr: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpConnection {
    pub async fn open(addr: &str) -> anyhow::Result<Self> {
        let mut connection = Self {
            addr: addr.to_owned(),
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
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            // Ends when the server closes the connection; the next request reconnects.
            let _ = connection.await;
        });
        self.sender = Some(sender);
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
        let sender = match self.sender.as_mut() {
            Some(sender) if !sender.is_closed() => sender,
            _ => {
                self.reconnect().await?;
                self.sender.as_mut().context("just connected")?
            }
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body))?;
        let result = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
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
