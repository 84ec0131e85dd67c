//! The HTTP/1.1 server: one task per TCP connection, each able to drop its connection on purpose.
//!
//! Faults need what a framework hides: closing a connection without answering, with a TCP reset
//! or after hanging. Each connection gets a [`ConnectionControl`] in its requests' extensions; a
//! handler that wants the connection gone asks for it and never answers, and the connection task
//! drops the socket. For a reset, the task sets `SO_LINGER` to zero first (through a duplicate of
//! the socket's descriptor, since hyper owns the stream), so closing sends RST instead of FIN.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How a connection is to end without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Abort {
    /// Close with RST: the client sees "connection reset by peer".
    Reset,
    /// Close with FIN: the client sees the connection closed before a response.
    Close,
}

/// A request's handle on its own TCP connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionControl {
    abort: watch::Sender<Option<Abort>>,
}

impl ConnectionControl {
    /// Ends the connection without answering; the caller should then never return.
    pub(crate) async fn abort(&self, how: Abort) -> Response<Body> {
        self.abort.send_replace(Some(how));
        // The connection task drops this future together with the connection.
        std::future::pending().await
    }
}

/// Accepts connections until `shutdown` is cancelled.
pub(crate) async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                tokio::spawn(serve_connection(
                    stream,
                    router.clone(),
                    shutdown.child_token(),
                ));
            }
            Err(error) => {
                // Typically EMFILE; accepting again at once would spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, router: Router, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let socket = duplicate_socket(&stream);
    let (abort, mut aborted) = watch::channel(None);
    let control = ConnectionControl { abort };
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(control.clone());
        let router = router.clone();
        async move {
            let response = router.oneshot(request.map(Body::new)).await;
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let mut connection = Box::pin(
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
    );
    let how = tokio::select! {
        _ = connection.as_mut() => None,
        () = shutdown.cancelled() => None,
        changed = aborted.wait_for(Option::is_some) => changed.ok().and_then(|how| *how),
    };
    if how == Some(Abort::Reset)
        && let Some(socket) = &socket
    {
        let _ = socket.set_linger(Some(Duration::ZERO));
    }
    // Drop hyper's end first; the socket closes when the duplicate goes too.
    drop(connection);
    drop(socket);
}

/// A second descriptor for the connection's socket, to set options on it while hyper owns it.
fn duplicate_socket(stream: &TcpStream) -> Option<socket2::Socket> {
    use std::os::fd::AsFd;
    stream
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(socket2::Socket::from)
}
