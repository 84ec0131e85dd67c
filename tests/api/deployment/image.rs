//! The OCI image (`deploy/container/`), built once per test run by `deploy/container/build`
//! from the debug build the suite already has (stripped of its debug information), and run for
//! real with podman against the suite's PostgreSQL and Redis, on the host's network: `migrate` as
//! a one-shot, `serve` until gRPC health answers SERVING, a ticket created and read back,
//! `healthcheck` as a one-shot, SIGTERM (`podman stop`) ending it with exit 0 within the drain;
//! the running process is not root, its root file system is read-only, and its secrets came
//! from mounted files only. Podman is a required tool: without it these tests fail.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use secrecy::ExposeSecret;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::migrations::{empty_database, migration_count};
use crate::support::binary::{BINARY, sign_up_through};
use crate::support::{
    PATIENCE, TEST_FINGERPRINT_KEY, count_of, free_port, redis_url, repository_root, tool,
    valid_create_request,
};

/// The uid and gid the image runs as (deploy/container/Containerfile's USER).
const IMAGE_USER: u32 = 65532;
/// The drain settings the container runs with: a stop must end well within them.
const SHUTDOWN_DELAY_MS: u64 = 500;
const SHUTDOWN_DRAIN_TIMEOUT_MS: u64 = 5_000;
/// How long `podman stop` waits for the exit before SIGKILL (exit status 137).
const STOP_TIMEOUT_SECS: u64 = 30;

fn podman_bin() -> PathBuf {
    tool("PODMAN_BIN")
}

fn podman(args: &[&str]) -> Output {
    Command::new(podman_bin())
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("run podman {args:?}: {error}"))
}

/// `podman args`, which must succeed; its standard output, trimmed.
fn podman_ok(args: &[&str]) -> String {
    let output = podman(args);
    assert!(
        output.status.success(),
        "podman {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The image of this build of the binary, built on first use by `deploy/container/build
/// --binary` and shared by the tests of the run. Its tag names the binary's size and time, so a
/// concurrent run of another build (another work tree) has its own; images of this kind older
/// than a day are removed first.
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let metadata = std::fs::metadata(BINARY).expect("the supportdesk binary");
        let modified = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_nanos());
        let tag = format!(
            "localhost/supportdesk-test:{}-{:x}",
            env!("CARGO_PKG_VERSION"),
            modified ^ u128::from(metadata.len())
        );
        // Earlier builds' images (an image a container still uses is kept: rmi refuses).
        let old = podman_ok(&[
            "images",
            "--quiet",
            "--filter",
            "reference=localhost/supportdesk-test",
            "--filter",
            "until=24h",
        ]);
        for id in old.lines() {
            let _ = podman(&["rmi", id]);
        }
        let podman_dir = podman_bin()
            .parent()
            .expect("podman's directory")
            .to_path_buf();
        let path = std::env::join_paths(std::iter::once(podman_dir).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .expect("a PATH");
        let started = Instant::now();
        let output = Command::new(repository_root().join("deploy/container/build"))
            .args(["--binary", BINARY, "--tag", &tag, "--engine", "podman"])
            .env("PATH", path)
            .output()
            .expect("run deploy/container/build");
        assert!(
            output.status.success(),
            "deploy/container/build --binary {BINARY}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!(
            "deploy/container/build --binary: {tag} in {:?}",
            started.elapsed()
        );
        tag
    })
}

async fn built_image() -> String {
    tokio::task::spawn_blocking(|| image().to_owned())
        .await
        .expect("the image build did not panic")
}

/// A container the test started, removed (killed first if need be) when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.0]);
    }
}

#[tokio::test]
async fn the_image_holds_the_binary_its_libraries_and_its_labels_and_nothing_else() {
    let image = built_image().await;
    let config: serde_json::Value = serde_json::from_str(&podman_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        &image,
    ]))
    .expect("the image's configuration");
    assert_eq!(config["User"], format!("{IMAGE_USER}:{IMAGE_USER}"));
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/supportdesk"])
    );
    assert_eq!(config["Cmd"], serde_json::json!(["serve"]));
    assert_eq!(config["StopSignal"], "SIGTERM");
    let labels = &config["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap_or_default();
    assert!(
        revision.len() >= 40 && revision[..40].chars().all(|c| c.is_ascii_hexdigit()),
        "the commit it was built from: {revision:?}"
    );
    assert!(
        labels["org.opencontainers.image.licenses"]
            .as_str()
            .is_some_and(|licenses| licenses.starts_with("MIT AND LGPL-2.1-or-later")),
        "{labels}"
    );
    assert!(
        labels["org.opencontainers.image.source"].is_string(),
        "{labels}"
    );

    // The file system, as `podman export` writes it: the binary, the loader and the libraries
    // it needs, their copyright files, three files of /etc and an empty /tmp. No shell, no
    // simulator.
    let name = format!("supportdesk-test-files-{}", uuid::Uuid::now_v7().simple());
    podman_ok(&["create", "--name", &name, &image]);
    let _container = Container(name.clone());
    let archive = tempfile::NamedTempFile::new().expect("a temporary file");
    podman_ok(&[
        "export",
        "--output",
        archive.path().to_str().unwrap(),
        &name,
    ]);
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(archive.path())
        .output()
        .expect("run tar");
    assert!(listing.status.success());
    let files: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|line| {
            line.trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned()
        })
        .filter(|line| !line.is_empty())
        .collect();
    let allowed = |file: &str| {
        file == "usr/local/bin/supportdesk"
            || file.starts_with("lib/x86_64-linux-gnu/lib")
            || file == "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
            || file == "lib64/ld-linux-x86-64.so.2"
            || (file.starts_with("usr/share/doc/") && file.ends_with("/copyright"))
            || matches!(file, "etc/passwd" | "etc/group" | "etc/nsswitch.conf")
            // Directories, and what podman itself puts in every container.
            || matches!(
                file,
                "etc" | "lib" | "lib/x86_64-linux-gnu" | "lib64" | "tmp" | "usr" | "usr/local"
                    | "usr/local/bin" | "usr/share" | "usr/share/doc" | "dev" | "proc" | "sys"
                    | "run" | "etc/hosts" | "etc/resolv.conf" | "etc/hostname" | "run/.containerenv"
            )
            || (file.starts_with("usr/share/doc/") && file.matches('/').count() == 3)
    };
    let unexpected: Vec<&String> = files.iter().filter(|file| !allowed(file)).collect();
    assert!(
        unexpected.is_empty(),
        "files that have no business in the image: {unexpected:?}"
    );
    for needed in [
        "usr/local/bin/supportdesk",
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib/x86_64-linux-gnu/libgcc_s.so.1",
        "lib64/ld-linux-x86-64.so.2",
        "usr/share/doc/libc6/copyright",
        "etc/passwd",
    ] {
        assert!(
            files.iter().any(|file| file == needed),
            "{needed}: {files:?}"
        );
    }
    assert!(
        !files.iter().any(|file| file.contains("simulator")
            || file.ends_with("/sh")
            || file.ends_with("/bash")),
        "{files:?}"
    );
}

/// The process of a running container, as the host sees it.
struct HostProcess {
    status: String,
    root_mount_options: String,
}

fn host_process(container: &str) -> HostProcess {
    let pid = podman_ok(&["inspect", "--format", "{{.State.Pid}}", container]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let mountinfo =
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("/proc/PID/mountinfo");
    // mountinfo: id parent major:minor root mount-point options ...; the root is mounted at "/".
    let root_mount_options = mountinfo
        .lines()
        .map(|line| line.split(' ').collect::<Vec<_>>())
        .find(|fields| fields.get(4) == Some(&"/"))
        .and_then(|fields| fields.get(5).map(|options| (*options).to_owned()))
        .expect("the root mount");
    HostProcess {
        status,
        root_mount_options,
    }
}

/// The value of the `name:` line of /proc/PID/status.
fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .map_or("", str::trim)
}

async fn health_of(port: u16) -> Option<i32> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .ok()?;
    Some(response.into_inner().status)
}

#[tokio::test]
async fn the_image_migrates_serves_and_stops_on_sigterm_as_a_read_only_non_root_container() {
    let image = built_image().await;
    let started = Instant::now();
    let database = empty_database().await;
    // trust auth ignores the password: it is there to prove it never reaches a log line.
    let database_url = database.url().expose_secret().replace(
        "postgres://postgres@",
        "postgres://postgres:file-secret-hunter2@",
    );
    let jwt_secret = format!("jwt-from-a-mounted-file-{}", uuid::Uuid::now_v7().simple());

    // The secrets, as a Kubernetes Secret volume or a podman secret gives them: files, with the
    // trailing newline `echo` leaves, readable by the image's user.
    let secrets = tempfile::tempdir().expect("a temporary directory");
    let mut mounts = Vec::new();
    for (name, value) in [("DATABASE_URL", &database_url), ("JWT_SECRET", &jwt_secret)] {
        let path = secrets.path().join(name);
        std::fs::write(&path, format!("{value}\n")).expect("write a secret");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o444))
            .expect("make the secret readable");
        mounts.push(format!("{}:/run/secrets/{name}:ro", path.display()));
    }
    let port = free_port();
    let prefix = format!("supportdesk-test:{}:", uuid::Uuid::now_v7().simple());
    let settings = [
        ("DATABASE_URL_FILE", "/run/secrets/DATABASE_URL".to_owned()),
        ("JWT_SECRET_FILE", "/run/secrets/JWT_SECRET".to_owned()),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", prefix),
        (
            "IDEMPOTENCY_FINGERPRINT_KEY",
            TEST_FINGERPRINT_KEY.to_owned(),
        ),
        ("GRPC_LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("HEALTH_PROBE_INTERVAL_MS", "200".to_owned()),
        ("SHUTDOWN_DELAY_MS", SHUTDOWN_DELAY_MS.to_string()),
        (
            "SHUTDOWN_DRAIN_TIMEOUT_MS",
            SHUTDOWN_DRAIN_TIMEOUT_MS.to_string(),
        ),
    ];
    // What every run of the image gets here: the host's network (the suite's PostgreSQL and
    // Redis on 127.0.0.1), a read-only root, no capabilities, no privilege gain.
    let run_args = |name: Option<&str>| -> Vec<String> {
        let mut args: Vec<String> = vec!["run".into()];
        match name {
            Some(name) => args.extend(["--detach".into(), "--name".into(), name.into()]),
            None => args.push("--rm".into()),
        }
        args.extend(
            [
                "--network",
                "host",
                "--read-only",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
            ]
            .map(String::from),
        );
        for mount in &mounts {
            args.extend(["--volume".into(), mount.clone()]);
        }
        for (key, value) in &settings {
            args.extend(["--env".into(), format!("{key}={value}")]);
        }
        args.push(image.clone());
        args
    };

    // migrate, a one-shot; DATABASE_URL only from its file.
    let mut migrate = run_args(None);
    migrate.push("migrate".into());
    let migrate: Vec<&str> = migrate.iter().map(String::as_str).collect();
    podman_ok(&migrate);
    assert_eq!(
        count_of(
            &database,
            "SELECT count(*) AS count FROM __diesel_schema_migrations"
        )
        .await,
        migration_count(),
        "every migration applied by the container"
    );

    // serve, the image's default command.
    let name = format!("supportdesk-test-{}", uuid::Uuid::now_v7().simple());
    let serve = run_args(Some(&name));
    let serve: Vec<&str> = serve.iter().map(String::as_str).collect();
    podman_ok(&serve);
    let container = Container(name.clone());
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let waited = Instant::now();
    while health_of(port).await != Some(serving) {
        if waited.elapsed() > PATIENCE {
            panic!(
                "the container never answered SERVING; its log:\n{}",
                podman_ok(&["logs", &name])
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // healthcheck, a one-shot of the same image, as a container health check runs it.
    let addr = format!("127.0.0.1:{port}");
    podman_ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "--read-only",
        "--cap-drop",
        "ALL",
        &image,
        "healthcheck",
        "--addr",
        &addr,
    ]);

    // A real call: sign up (the tokens are signed with the JWT secret from its file), then
    // CreateTicket and GetTicket.
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the container");
    let admin = sign_up_through(&channel).await;
    let mut tickets = TicketServiceClient::new(channel);
    let created = tickets
        .create_ticket(admin.request(valid_create_request("Printer on fire, in a container")))
        .await
        .expect("CreateTicket")
        .into_inner();
    let read = tickets
        .get_ticket(admin.request(v1::GetTicketRequest {
            id: created.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("GetTicket")
        .into_inner();
    assert_eq!(read.subject, "Printer on fire, in a container");

    // Not root, no capabilities, no privilege gain, a read-only root file system: read off the
    // running process itself, not the container's configuration.
    let process = host_process(&name);
    let uid = status_field(&process.status, "Uid");
    let user = IMAGE_USER.to_string();
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        [user.as_str(); 4],
        "real, effective, saved and file-system uid: {uid}"
    );
    assert_eq!(status_field(&process.status, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&process.status, "NoNewPrivs"), "1");
    assert!(
        process
            .root_mount_options
            .split(',')
            .any(|option| option == "ro"),
        "the root is mounted read-only: {}",
        process.root_mount_options
    );

    // SIGTERM: NOT_SERVING, the shutdown delay, the drain, exit 0, well before podman's
    // SIGKILL.
    let stopping = Instant::now();
    podman_ok(&["stop", "--time", &STOP_TIMEOUT_SECS.to_string(), &name]);
    let took = stopping.elapsed();
    let exit = podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    let log = podman_ok(&["logs", &name]);
    assert_eq!(exit, "0", "SIGTERM ends it cleanly; its log:\n{log}");
    let bound = Duration::from_millis(SHUTDOWN_DELAY_MS + SHUTDOWN_DRAIN_TIMEOUT_MS);
    assert!(
        took < bound + Duration::from_secs(10),
        "stopped in {took:?}: within the drain ({bound:?}) and far from podman's SIGKILL \
         ({STOP_TIMEOUT_SECS} s)"
    );
    assert!(log.contains("SIGTERM received"), "{log}");
    for secret in [jwt_secret.as_str(), "file-secret-hunter2"] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
    drop(container);
    eprintln!(
        "the image test (migrate, serve, calls, stop): {:?}",
        started.elapsed()
    );
}
