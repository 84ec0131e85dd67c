//! A real S3-compatible store for the attachment tests: SeaweedFS (`weed mini`, installed by
//! deploy/local/setup, `WEED_BIN`), which verifies SigV4 signatures. One instance per test binary
//! serves every test app (one bucket; object keys start with the account, unique per test); a
//! test that kills the store starts its own.
//!
//! Each instance runs under a small shell watchdog in its own process group: the group dies with
//! the test binary, so no store outlives the suite; [`StorageServer::kill`] kills the group.

use std::net::{Ipv4Addr, TcpStream};
use std::process::{Child, Command};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use supportdesk::configuration::{Settings, StorageSettings};

use super::watched::{kill_group, spawn_watched};
use super::{ClosedPort, tool};

/// The bucket every test store has.
pub(crate) const TEST_BUCKET: &str = "supportdesk-test";
pub(crate) const TEST_ACCESS_KEY: &str = "supportdesk-test-key";
pub(crate) const TEST_SECRET_KEY: &str = "supportdesk-test-secret-0123456789";

/// A running (or killed) SeaweedFS on ports of its own.
pub(crate) struct StorageServer {
    /// The S3 port.
    pub(crate) port: u16,
    /// master, master gRPC, volume, volume gRPC, filer, filer gRPC, S3 gRPC, admin, admin gRPC.
    other_ports: [u16; 9],
    workdir: tempfile::TempDir,
    process: Option<Child>,
}

/// The store every test app of this binary uses.
pub(crate) static SHARED_STORAGE: LazyLock<StorageServer> = LazyLock::new(StorageServer::start);

impl StorageServer {
    /// A store on free ports, up (its S3 port accepting connections).
    pub(crate) fn start() -> Self {
        let workdir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(
            workdir.path().join("s3.json"),
            serde_json::json!({"identities": [{"name": "supportdesk",
                "credentials": [{"accessKey": TEST_ACCESS_KEY, "secretKey": TEST_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List"]}]})
            .to_string(),
        )
        .expect("the identities file is written");
        std::fs::create_dir(workdir.path().join("data")).expect("the data directory");
        let closed: [ClosedPort; 10] = std::array::from_fn(|_| ClosedPort::new());
        let mut server = Self {
            port: closed[0].port,
            other_ports: std::array::from_fn(|index| closed[index + 1].port),
            workdir,
            process: None,
        };
        // Held until now: the ten ports are distinct, and no other server was handed one.
        drop(closed);
        server.launch();
        server
    }

    fn launch(&mut self) {
        let [
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3_grpc,
            admin,
            admin_grpc,
        ] = self.other_ports;
        let dir = self.workdir.path();
        let weed = tool("WEED_BIN");
        let arguments = [
            "mini".to_owned(),
            format!("-dir={}", dir.join("data").display()),
            "-ip=127.0.0.1".to_owned(),
            "-ip.bind=127.0.0.1".to_owned(),
            "-admin.ui=false".to_owned(),
            "-webdav=false".to_owned(),
            format!("-master.port={master}"),
            format!("-master.port.grpc={master_grpc}"),
            format!("-volume.port={volume}"),
            format!("-volume.port.grpc={volume_grpc}"),
            format!("-filer.port={filer}"),
            format!("-filer.port.grpc={filer_grpc}"),
            format!("-s3.port={}", self.port),
            format!("-s3.port.grpc={s3_grpc}"),
            "-s3.port.iceberg=0".to_owned(),
            "-s3.port.lance=0".to_owned(),
            format!("-admin.port={admin}"),
            format!("-admin.port.grpc={admin_grpc}"),
            format!("-s3.config={}", dir.join("s3.json").display()),
            format!("-bucket={TEST_BUCKET}"),
        ];
        let quoted: Vec<String> = std::iter::once(weed.display().to_string())
            .chain(arguments)
            .map(|argument| format!("'{argument}'"))
            .collect();
        self.process = Some(spawn_watched(
            &format!(
                "{} >>'{}' 2>&1",
                quoted.join(" "),
                dir.join("weed.log").display()
            ),
            "the store",
        ));
        let started = Instant::now();
        while !self.bucket_answers() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "SeaweedFS did not serve its bucket on {} within 60 s; its log: {}",
                self.port,
                std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether a signed `HEAD` of the bucket answers 200 (plain HTTP/1.1 over a blocking socket:
    /// this runs outside any runtime).
    fn bucket_answers(&self) -> bool {
        use rusty_s3::S3Action;
        let bucket = rusty_s3::Bucket::new(
            self.endpoint(),
            rusty_s3::UrlStyle::Path,
            TEST_BUCKET,
            "us-east-1",
        )
        .expect("a bucket");
        let credentials = rusty_s3::Credentials::new(TEST_ACCESS_KEY, TEST_SECRET_KEY);
        let signed = rusty_s3::actions::HeadBucket::new(&bucket, Some(&credentials))
            .sign(Duration::from_secs(60));
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "HEAD {}?{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            signed.path(),
            signed.query().unwrap_or_default(),
            self.port
        );
        let mut answer = [0u8; 12];
        std::io::Write::write_all(&mut stream, request.as_bytes()).is_ok()
            && std::io::Read::read_exact(&mut stream, &mut answer).is_ok()
            && answer.ends_with(b" 200")
    }

    /// Kills the store at once (SIGKILL to its process group), as a crash would.
    pub(crate) fn kill(&mut self) {
        kill_group(&mut self.process);
    }

    /// Stops the store where it is (SIGSTOP to its process group), as a store that hangs: its
    /// connections stay open and the kernel's buffers fill, but it reads nothing more.
    /// Its watchdog goes on, so that a paused store still dies with the test binary.
    pub(crate) fn pause(&self) {
        self.signal("STOP", true);
        self.signal("CONT", false);
    }

    /// Lets a paused store go on (SIGCONT to its process group).
    pub(crate) fn resume(&self) {
        self.signal("CONT", true);
    }

    /// Sends `signal` to the store's process group, or only to its watchdog.
    fn signal(&self, signal: &str, group: bool) {
        let child = self.process.as_ref().expect("the store runs");
        let target = if group {
            format!("-{}", child.id())
        } else {
            child.id().to_string()
        };
        let status = Command::new("kill")
            .args(["-s", signal, "--", &target])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIG{signal} reaches the store's group");
    }

    /// Starts the store again on the same ports and data.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub(crate) fn endpoint(&self) -> url::Url {
        url::Url::parse(&format!("http://127.0.0.1:{}", self.port)).expect("a URL")
    }

    /// Settings that point a service at this store.
    pub(crate) fn settings(&self) -> StorageSettings {
        StorageSettings {
            endpoint: self.endpoint(),
            public_endpoint: None,
            region: "us-east-1".to_owned(),
            bucket: TEST_BUCKET.to_owned(),
            access_key_id: TEST_ACCESS_KEY.to_owned(),
            secret_access_key: SecretString::from(TEST_SECRET_KEY),
            timeout: Duration::from_secs(2),
            max_concurrency: 32,
            probe_interval: Duration::from_millis(200),
            breaker_failure_threshold: 2,
            breaker_cool_down: Duration::from_millis(500),
        }
    }

    /// Points `settings` at this store.
    pub(crate) fn configure(&self, settings: &mut Settings) {
        settings.attachments.storage = Some(self.settings());
    }
}

/// How many objects the store at `endpoint` holds under `prefix` (a ListObjectsV2,
/// `GET /<bucket>/?list-type=2`, signed by the test; the `<Key>` elements of its answer).
pub(crate) async fn objects_under(endpoint: &url::Url, prefix: &str) -> usize {
    use rusty_s3::S3Action;
    let bucket = rusty_s3::Bucket::new(
        endpoint.clone(),
        rusty_s3::UrlStyle::Path,
        TEST_BUCKET,
        "us-east-1",
    )
    .expect("a bucket");
    let credentials = rusty_s3::Credentials::new(TEST_ACCESS_KEY, TEST_SECRET_KEY);
    let mut list = rusty_s3::actions::GetObject::new(&bucket, Some(&credentials), "");
    list.query_mut().insert("list-type", "2");
    list.query_mut().insert("prefix", prefix);
    let answer = super::attachments::http()
        .get(list.sign(Duration::from_secs(60)))
        .send()
        .await
        .expect("the store answers");
    assert_eq!(answer.status(), 200);
    answer
        .text()
        .await
        .expect("a listing")
        .matches("<Key>")
        .count()
}

impl Drop for StorageServer {
    fn drop(&mut self) {
        self.kill();
    }
}
