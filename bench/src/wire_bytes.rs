//! Bytes on the wire for a page of tickets (issue 28, item 6; `loadgen wire-bytes`): every
//! variant is called through a TCP proxy of its own that counts the bytes it forwards each way,
//! so the figures are what crossed the socket (HTTP/2 or HTTP/1.1 framing, headers, trailers,
//! flow-control frames and all), not a message's length. A variant's connection is warmed with
//! one call first (the connection preface, SETTINGS and the header tables are paid once per
//! connection), then `--calls` calls are counted and averaged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use prost::Message;
use serde::Serialize;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::codec::CompressionEncoding;
use tonic::transport::Endpoint;

use crate::data::BenchData;
use crate::load::with_token;

#[derive(Args)]
pub struct WireBytesArgs {
    /// The service's gRPC address.
    #[arg(long)]
    pub addr: String,
    /// Envoy's REST address in front of the service.
    #[arg(long)]
    pub rest_addr: String,
    /// The bench data whose admin lists the account's tickets.
    #[arg(long)]
    pub data: std::path::PathBuf,
    #[arg(long, default_value_t = 100)]
    pub page_size: i32,
    /// Calls counted per variant, after one warm-up call.
    #[arg(long, default_value_t = 10)]
    pub calls: u64,
}

/// Bytes forwarded by a proxy, each way.
#[derive(Default)]
struct Counted {
    to_server: AtomicU64,
    to_client: AtomicU64,
}

impl Counted {
    fn read(&self) -> (u64, u64) {
        (
            self.to_server.load(Ordering::SeqCst),
            self.to_client.load(Ordering::SeqCst),
        )
    }
}

/// A TCP proxy on a free loopback port in front of `target`, counting what it forwards.
async fn counting_proxy(target: &str) -> anyhow::Result<(String, Arc<Counted>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let counted = Arc::new(Counted::default());
    let target = target.to_owned();
    let shared = Arc::clone(&counted);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&target).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let up = Arc::clone(&shared);
            let down = Arc::clone(&shared);
            tokio::spawn(pump(client_read, server_write, move |n| {
                up.to_server.fetch_add(n, Ordering::SeqCst);
            }));
            tokio::spawn(pump(server_read, client_write, move |n| {
                down.to_client.fetch_add(n, Ordering::SeqCst);
            }));
        }
    });
    Ok((addr, counted))
}

/// Copies `from` to `to`, counting each chunk before it is forwarded (so a caller that has its
/// answer finds it counted).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: impl Fn(u64),
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        count(read as u64);
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[derive(Debug, Serialize)]
pub struct Variant {
    /// What was asked: the transport and the encoding the client accepts.
    pub variant: String,
    /// What the answer said it was encoded with (`grpc-encoding` or `content-encoding`).
    pub encoding: String,
    /// Tickets on the page.
    pub tickets: usize,
    /// Mean bytes a call, server to client, as they crossed the socket.
    pub response_bytes: f64,
    /// Mean bytes a call, client to server.
    pub request_bytes: f64,
    /// The page before compression: the protobuf message (gRPC) or the JSON body (REST).
    pub payload_bytes: usize,
    /// Bytes of the first call on a fresh connection, server to client (preface, settings and
    /// header tables included).
    pub first_call_response_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct WireBytesReport {
    pub scenario: &'static str,
    pub page_size: i32,
    pub calls: u64,
    pub variants: Vec<Variant>,
}

pub async fn run(args: WireBytesArgs) -> anyhow::Result<()> {
    let data = BenchData::read(&args.data)?;
    let mut variants = Vec::new();
    for encoding in [
        None,
        Some(CompressionEncoding::Gzip),
        Some(CompressionEncoding::Zstd),
    ] {
        variants.push(grpc_variant(&args, &data, encoding).await?);
    }
    for accept in [None, Some("gzip"), Some("br"), Some("zstd")] {
        variants.push(rest_variant(&args, &data, accept).await?);
    }
    let report = WireBytesReport {
        scenario: "wire-bytes",
        page_size: args.page_size,
        calls: args.calls,
        variants,
    };
    println!("{}", serde_json::to_string(&report)?);
    for variant in &report.variants {
        eprintln!(
            "{:<40} {:>6} {:>3} tickets: {:>8.0} B down, {:>6.0} B up (payload {} B; first call {} B down)",
            variant.variant,
            variant.encoding,
            variant.tickets,
            variant.response_bytes,
            variant.request_bytes,
            variant.payload_bytes,
            variant.first_call_response_bytes
        );
    }
    Ok(())
}

/// Waits until the proxy's counts stop moving (the last frames of a call, such as a client's
/// WINDOW_UPDATE, may cross just after the answer is read), at most half a second.
async fn settled(counted: &Counted) -> (u64, u64) {
    let mut last = counted.read();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = counted.read();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

async fn grpc_variant(
    args: &WireBytesArgs,
    data: &BenchData,
    encoding: Option<CompressionEncoding>,
) -> anyhow::Result<Variant> {
    let (proxy, counted) = counting_proxy(&args.addr).await?;
    let channel = Endpoint::from_shared(format!("http://{proxy}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .context("connect through the counting proxy")?;
    let mut client = TicketServiceClient::new(channel);
    if let Some(encoding) = encoding {
        client = client.accept_compressed(encoding);
    }
    let request = || {
        with_token(
            &data.admin.access_token,
            v1::ListTicketsRequest {
                page_size: args.page_size,
                ..Default::default()
            },
        )
    };
    let first = client
        .list_tickets(request())
        .await
        .context("ListTickets")?;
    let answered_with = first
        .metadata()
        .get("grpc-encoding")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("identity")
        .to_owned();
    let page = first.into_inner();
    let (_, first_down) = settled(&counted).await;
    let before = counted.read();
    for _ in 0..args.calls {
        client
            .list_tickets(request())
            .await
            .context("ListTickets")?;
    }
    let after = settled(&counted).await;
    let calls = args.calls.max(1) as f64;
    Ok(Variant {
        variant: format!(
            "gRPC ListTickets, accepts {}",
            encoding.map_or("identity".to_owned(), |e| e.to_string())
        ),
        encoding: answered_with,
        tickets: page.tickets.len(),
        response_bytes: (after.1 - before.1) as f64 / calls,
        request_bytes: (after.0 - before.0) as f64 / calls,
        payload_bytes: page.encoded_len(),
        first_call_response_bytes: first_down,
    })
}

async fn rest_variant(
    args: &WireBytesArgs,
    data: &BenchData,
    accept: Option<&str>,
) -> anyhow::Result<Variant> {
    let (proxy, counted) = counting_proxy(&args.rest_addr).await?;
    let stream = TcpStream::connect(&proxy).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let path = format!("/v1/tickets?pageSize={}", args.page_size);
    let authorization = format!("Bearer {}", data.admin.access_token);
    let mut call = async || -> anyhow::Result<(String, Bytes)> {
        let mut request = http::Request::get(&path)
            .header("host", &args.rest_addr)
            .header("authorization", &authorization);
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        sender.ready().await?;
        let response = sender
            .send_request(request.body(Empty::<Bytes>::new())?)
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET {path} answered {}",
            response.status()
        );
        let encoding = response
            .headers()
            .get("content-encoding")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("identity")
            .to_owned();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((encoding, body))
    };
    let (encoding, body) = call().await?;
    let (_, first_down) = settled(&counted).await;
    let before = counted.read();
    for _ in 0..args.calls {
        call().await?;
    }
    let after = settled(&counted).await;
    // The page as JSON: this answer when it was not compressed, else the same page asked for
    // again without Accept-Encoding (on a connection of its own, not counted).
    let json = if encoding == "identity" {
        body
    } else {
        let mut plain = crate::rest::HttpConnection::open(&args.rest_addr).await?;
        plain
            .get(&path, &[("authorization", authorization.as_str())])
            .await?
            .body
    };
    let page: serde_json::Value = serde_json::from_slice(&json).context("the page is JSON")?;
    let calls = args.calls.max(1) as f64;
    Ok(Variant {
        variant: format!(
            "REST ListTickets via Envoy, Accept-Encoding: {}",
            accept.unwrap_or("(none)")
        ),
        encoding,
        tickets: page["tickets"].as_array().map_or(0, Vec::len),
        response_bytes: (after.1 - before.1) as f64 / calls,
        request_bytes: (after.0 - before.0) as f64 / calls,
        payload_bytes: json.len(),
        first_call_response_bytes: first_down,
    })
}
