//! The service's own TCP sockets: what a client's kernel sees of them.

use std::os::fd::BorrowedFd;

use crate::support::TestApp;

/// The inodes of this process's established TCP sockets whose local port is `port`, read from
/// `/proc/self/net/tcp{,6}` (addresses and ports in hex, state 01 = ESTABLISHED).
pub(crate) fn established_sockets_on_local_port(port: u16) -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let local_port = columns[1]
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) && columns[3] == "01" {
                inodes.push(columns[9].to_owned());
            }
        }
    }
    inodes
}

/// The file descriptor of this process that holds the socket `inode`.
pub(crate) fn descriptor_of_socket(inode: &str) -> Option<i32> {
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd")
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| {
            std::fs::read_link(entry.path()).is_ok_and(|target| target.as_os_str() == &*wanted)
        })
        .and_then(|entry| entry.file_name().to_str()?.parse().ok())
}

#[tokio::test]
async fn accepted_connections_send_without_waiting_for_acks() {
    let app = TestApp::spawn().await;
    app.create_ticket("a connection is accepted").await;
    let inodes = established_sockets_on_local_port(app.address.port());
    assert!(!inodes.is_empty(), "the server accepted no connection");
    for inode in inodes {
        let fd = descriptor_of_socket(&inode).expect("the socket's descriptor");
        #[expect(
            unsafe_code,
            reason = "the descriptor stays open: the server holds the connection for the whole test"
        )]
        let socket = unsafe { BorrowedFd::borrow_raw(fd) };
        let nodelay = socket2::SockRef::from(&socket)
            .tcp_nodelay()
            .expect("getsockopt TCP_NODELAY");
        assert!(
            nodelay,
            "an accepted socket runs Nagle's algorithm: responses wait for the client's delayed ACK"
        );
    }
}
