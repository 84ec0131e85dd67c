//! An HTTP proxy in front of the object store that can refuse deletions, or hold them until the
//! test lets them go, while passing every other call through: a store that answers reads but
//! fails (or delays) one kind of write, which no switch of the store itself can produce. Requests go on unchanged, `Host` included, so the store checks
//! the service's signatures as it would without the proxy; the calls it serves are bodiless or
//! small (inspections, probes, deletions), so each is read whole before it is forwarded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub(crate) struct StoreProxy {
    pub(crate) address: SocketAddr,
    refusing_deletes: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    holding: Arc<Holding>,
    acceptor: JoinHandle<()>,
}

/// DELETEs held back: while `on`, each waits for a permit the test releases.
struct Holding {
    on: AtomicBool,
    waiting: AtomicUsize,
    releases: tokio::sync::Semaphore,
}

/// Hop-by-hop headers, which describe one connection and are not forwarded.
const HOP_BY_HOP: [&str; 4] = ["connection", "keep-alive", "transfer-encoding", "upgrade"];

impl StoreProxy {
    /// A proxy to the store at `target`, passing everything through until told otherwise.
    pub(crate) async fn start(target: url::Url) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let refusing_deletes = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let holding = Arc::new(Holding {
            on: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            releases: tokio::sync::Semaphore::new(0),
        });
        let forwarder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        let acceptor = tokio::spawn({
            let refusing_deletes = refusing_deletes.clone();
            let refused = refused.clone();
            let holding = holding.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (target, forwarder) = (target.clone(), forwarder.clone());
                    let (refusing_deletes, refused) = (refusing_deletes.clone(), refused.clone());
                    let holding = holding.clone();
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let (target, forwarder) = (target.clone(), forwarder.clone());
                        let (refusing_deletes, refused) =
                            (refusing_deletes.clone(), refused.clone());
                        let holding = holding.clone();
                        async move {
                            if request.method() == Method::DELETE
                                && refusing_deletes.load(Ordering::SeqCst)
                            {
                                refused.fetch_add(1, Ordering::SeqCst);
                                return Ok::<_, Infallible>(answer(
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    Bytes::new(),
                                ));
                            }
                            if request.method() == Method::DELETE
                                && holding.on.load(Ordering::SeqCst)
                            {
                                holding.waiting.fetch_add(1, Ordering::SeqCst);
                                if let Ok(permit) = holding.releases.acquire().await {
                                    permit.forget();
                                }
                                holding.waiting.fetch_sub(1, Ordering::SeqCst);
                            }
                            Ok(forward(&forwarder, &target, request).await)
                        }
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Self {
            address,
            refusing_deletes,
            refused,
            holding,
            acceptor,
        }
    }

    /// Where the service reaches the store through this proxy.
    pub(crate) fn endpoint(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.address)).expect("a URL")
    }

    /// From now on, every DELETE is answered 503 without reaching the store (`false`: passed on).
    pub(crate) fn refuse_deletes(&self, refusing: bool) {
        self.refusing_deletes.store(refusing, Ordering::SeqCst);
    }

    /// From now on, every DELETE waits at the proxy until [`Self::release_a_delete`].
    pub(crate) fn hold_deletes(&self) {
        self.holding.on.store(true, Ordering::SeqCst);
    }

    /// How many DELETEs wait at the proxy now.
    pub(crate) fn deletes_held(&self) -> usize {
        self.holding.waiting.load(Ordering::SeqCst)
    }

    /// Lets one held DELETE go on to the store (one held now, or the next one).
    pub(crate) fn release_a_delete(&self) {
        self.holding.releases.add_permits(1);
    }

    /// How many DELETEs the proxy has refused.
    pub(crate) fn deletes_refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for StoreProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// Sends `request` on to the store and answers what it answered (502 when it could not).
async fn forward(
    forwarder: &reqwest::Client,
    target: &url::Url,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|collected| collected.to_bytes()) else {
        return answer(StatusCode::BAD_REQUEST, Bytes::new());
    };
    let mut url = target.clone();
    url.set_path(parts.uri.path());
    url.set_query(parts.uri.query());
    let mut headers = parts.headers;
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let sent = forwarder
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let Ok(response) = sent else {
        return answer(StatusCode::BAD_GATEWAY, Bytes::new());
    };
    let status = response.status();
    let mut headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(hyper::header::CONTENT_LENGTH);
    let mut answered = answer(status, body);
    for (name, value) in &headers {
        answered.headers_mut().append(name, value.clone());
    }
    answered
}

fn answer(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}
