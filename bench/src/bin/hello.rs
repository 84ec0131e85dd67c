//! `hello`: a plain tonic 0.14 server answering `bench.hello.v1.Greeter/SayHello` and nothing
//! else: no auth, no rate limit, no database. What it serves per second on this machine is the
//! ceiling the benchmark measures supportdesk against.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use supportdesk_bench::hello::greeter_server::{Greeter, GreeterServer};
use supportdesk_bench::hello::{FILE_DESCRIPTOR_SET, HelloReply, HelloRequest};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

#[derive(Parser)]
#[command(about = "A plain tonic Greeter: the ceiling of the benchmark")]
struct Args {
    /// Where to listen for gRPC (plaintext HTTP/2).
    #[arg(long, default_value = "127.0.0.1:50061")]
    addr: SocketAddr,
    /// Write the descriptor set (for Envoy's transcoder) to this file and exit.
    #[arg(long)]
    descriptor_out: Option<PathBuf>,
}

struct HelloGreeter;

#[tonic::async_trait]
impl Greeter for HelloGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("Hello, {name}!"),
        }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(path) = args.descriptor_out {
        std::fs::write(&path, FILE_DESCRIPTOR_SET)?;
        return Ok(());
    }
    // Nagle off on accepted sockets, as the service does: without it small responses can wait
    // for the peer's delayed ACK (40 ms) and the ceiling would be a stall, not a speed.
    let incoming = TcpIncoming::bind(args.addr)?.with_nodelay(Some(true));
    eprintln!("hello: serving bench.hello.v1.Greeter on {}", args.addr);
    Server::builder()
        .add_service(GreeterServer::new(HelloGreeter))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
