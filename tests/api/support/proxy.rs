//! A TCP proxy in front of PostgreSQL or Redis that a test can cut and restore: the real server
//! keeps running while the service under test loses it, as in a network partition. It can also
//! stall (every connection stays open and accepts bytes, none is forwarded either way until it
//! is unstalled, then all are: a network that stops delivering without failing). It can also
//! count the round trips the service makes through it, read off the wire: PostgreSQL's `Sync`
//! and simple `Query` messages (each is answered by one `ReadyForQuery`), Redis's commands (each
//! answered by one reply; the commands a script runs inside Redis never cross the wire).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) struct TcpProxy {
    pub(crate) address: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<std::sync::Mutex<CancellationToken>>,
    acceptor: JoinHandle<()>,
    round_trips: Arc<AtomicU64>,
    stalled: watch::Sender<bool>,
    counting: bool,
}

/// The wire protocol whose round trips a proxy counts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Protocol {
    Postgres,
    Redis,
}

impl TcpProxy {
    pub(crate) async fn start(target: SocketAddr) -> Self {
        Self::start_counting(target, None).await
    }

    /// A proxy that counts the round trips clients make through it in `protocol`.
    pub(crate) async fn start_counting(target: SocketAddr, protocol: Option<Protocol>) -> Self {
        let round_trips = Arc::new(AtomicU64::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let (stalled, stall) = watch::channel(false);
        let acceptor = tokio::spawn({
            let up = up.clone();
            let connections = connections.clone();
            let round_trips = round_trips.clone();
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        // Refused the way a dead host's port would be: closed at once.
                        drop(inbound);
                        continue;
                    }
                    let cancelled = connections.lock().expect("lock").clone();
                    let round_trips = round_trips.clone();
                    let stall = stall.clone();
                    tokio::spawn(async move {
                        let Ok(outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        match protocol {
                            None => {
                                let (client_reads, client_writes) = inbound.into_split();
                                let (server_reads, server_writes) = outbound.into_split();
                                tokio::select! {
                                    _ = forward(client_reads, server_writes, stall.clone()) => {}
                                    _ = forward(server_reads, client_writes, stall) => {}
                                    () = cancelled.cancelled() => {}
                                }
                            }
                            Some(protocol) => {
                                let (mut client_reads, mut client_writes) = inbound.into_split();
                                let (mut server_reads, mut server_writes) = outbound.into_split();
                                let counted = async {
                                    let mut counter = WireCounter::new(protocol, round_trips);
                                    let mut buffer = vec![0_u8; 64 * 1024];
                                    loop {
                                        let read = client_reads.read(&mut buffer).await?;
                                        if read == 0 {
                                            return Ok::<_, std::io::Error>(());
                                        }
                                        counter.feed(&buffer[..read]);
                                        server_writes.write_all(&buffer[..read]).await?;
                                    }
                                };
                                tokio::select! {
                                    _ = counted => {}
                                    _ = tokio::io::copy(&mut server_reads, &mut client_writes) => {}
                                    () = cancelled.cancelled() => {}
                                }
                            }
                        }
                    });
                }
            }
        });
        Self {
            address,
            up,
            connections,
            acceptor,
            round_trips,
            stalled,
            counting: protocol.is_some(),
        }
    }

    /// Stops forwarding: connections stay open and new ones are accepted, but no byte goes
    /// through either way until [`TcpProxy::unstall`], when what was held goes on in order.
    pub(crate) fn stall(&self) {
        assert!(!self.counting, "a counting proxy cannot stall");
        self.stalled.send_replace(true);
    }

    /// Forwards again, what was held first.
    pub(crate) fn unstall(&self) {
        self.stalled.send_replace(false);
    }

    /// How many round trips clients have made through this proxy (a counting one) so far.
    pub(crate) fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }

    /// Cuts every open connection and refuses new ones.
    pub(crate) fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut token = self.connections.lock().expect("lock");
        token.cancel();
        *token = CancellationToken::new();
    }

    /// Lets connections through again.
    pub(crate) fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, holding each piece read while the proxy is stalled.
async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        while *stalled.borrow_and_update() {
            if stalled.changed().await.is_err() {
                return Ok(());
            }
        }
        to.write_all(&buffer[..read]).await?;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.connections.lock().expect("lock").cancel();
    }
}

/// The host:port of a postgres:// or redis:// URL.
pub(crate) fn socket_address_of(url: &str) -> SocketAddr {
    let after_scheme = url.split_once("://").expect("a URL").1;
    let authority = after_scheme.split(['/', '?']).next().expect("authority");
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else if url.starts_with("redis") {
        format!("{host_port}:6379")
    } else {
        format!("{host_port}:5432")
    };
    use std::net::ToSocketAddrs;
    host_port
        .replace("localhost", "127.0.0.1")
        .to_socket_addrs()
        .expect("resolve")
        .next()
        .expect("an address")
}

/// `url` with its host:port replaced by `address`.
pub(crate) fn url_through(url: &str, address: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = match rest.find(['/', '?']) {
        Some(index) => rest.split_at(index),
        None => (rest, ""),
    };
    let credentials = authority
        .rsplit_once('@')
        .map(|(credentials, _)| format!("{credentials}@"))
        .unwrap_or_default();
    format!("{scheme}://{credentials}{address}{path}")
}

/// Counts requests in the client-to-server byte stream of one connection.
struct WireCounter {
    protocol: Protocol,
    pending: Vec<u8>,
    /// PostgreSQL: still in the untyped start-up messages (SSLRequest, StartupMessage).
    starting: bool,
    /// PostgreSQL: whether a message the client waits on was sent since the last Sync.
    awaited_since_sync: bool,
    round_trips: Arc<AtomicU64>,
}

impl WireCounter {
    fn new(protocol: Protocol, round_trips: Arc<AtomicU64>) -> Self {
        Self {
            protocol,
            pending: Vec::new(),
            starting: true,
            awaited_since_sync: false,
            round_trips,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        loop {
            let consumed = match self.protocol {
                Protocol::Postgres => self.postgres_message(),
                Protocol::Redis => redis_command(&self.pending),
            };
            let Some((consumed, is_round_trip)) = consumed else {
                return;
            };
            if is_round_trip {
                self.round_trips.fetch_add(1, Ordering::SeqCst);
            }
            self.pending.drain(..consumed);
        }
    }

    /// The length of the first complete frontend message, and whether it ends a round trip.
    fn postgres_message(&mut self) -> Option<(usize, bool)> {
        let length_at = |offset: usize| -> Option<usize> {
            let bytes = self.pending.get(offset..offset + 4)?;
            Some(u32::from_be_bytes(bytes.try_into().ok()?) as usize)
        };
        if self.starting {
            let length = length_at(0)?;
            let code = length_at(4)?;
            if self.pending.len() < length {
                return None;
            }
            // 80877103: SSLRequest, 80877104: GSSENCRequest; the StartupMessage follows them.
            self.starting = code == 80_877_103 || code == 80_877_104;
            return Some((length, false));
        }
        let kind = *self.pending.first()?;
        let length = length_at(1)?;
        if self.pending.len() < 1 + length {
            return None;
        }
        // A Sync after nothing but Close messages (a dropped statement) is not waited for.
        let round_trip = match kind {
            b'Q' => true,
            b'S' => std::mem::take(&mut self.awaited_since_sync),
            b'C' => false,
            _ => {
                self.awaited_since_sync = true;
                false
            }
        };
        Some((1 + length, round_trip))
    }
}

/// The length of the first complete RESP command (an array of bulk strings) in `bytes`.
fn redis_command(bytes: &[u8]) -> Option<(usize, bool)> {
    fn line(bytes: &[u8], from: usize) -> Option<(&[u8], usize)> {
        let end = bytes
            .get(from..)?
            .windows(2)
            .position(|pair| pair == b"\r\n")?;
        Some((&bytes[from..from + end], from + end + 2))
    }
    fn number(text: &[u8]) -> Option<usize> {
        std::str::from_utf8(text).ok()?.parse().ok()
    }
    let (header, mut at) = line(bytes, 0)?;
    let count = number(header.strip_prefix(b"*")?)?;
    for _ in 0..count {
        let (header, after) = line(bytes, at)?;
        let length = number(header.strip_prefix(b"$")?)?;
        at = after + length + 2;
        if bytes.len() < at {
            return None;
        }
    }
    Some((at, true))
}
