//! A real PostgreSQL primary with a streaming replica (`pg_basebackup -R`), one pair per test
//! binary, started on first use on free ports as the `postgres` OS user, under a shell watchdog
//! in its own process group that stops both servers and removes their directory once the test
//! binary is gone. Tests make their database on the primary and see it replicated.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::free_port;

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub(crate) struct ReplicaPair {
    pub(crate) primary_port: u16,
    pub(crate) replica_port: u16,
    dir: PathBuf,
}

pub(crate) static REPLICA_PAIR: LazyLock<ReplicaPair> =
    LazyLock::new(|| ReplicaPair::start("replica"));

impl ReplicaPair {
    /// A pair of its own (`label` names its directory), for a test that stops its replica while
    /// others use [`REPLICA_PAIR`]. Blocks until both servers answer.
    pub(crate) fn start(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("supportdesk-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the pair's directory");
        let chowned = Command::new("chown")
            .args(["postgres:postgres", &dir.display().to_string()])
            .status()
            .expect("chown runs");
        assert!(
            chowned.success(),
            "the pair's directory is given to postgres"
        );
        let (primary_port, replica_port) = (free_port(), free_port());
        let d = dir.display();
        let as_pg = "runuser -u postgres --";
        let options = |port: u16| format!("-p {port} -k {d} -c listen_addresses=127.0.0.1");
        let script = format!(
            "set -e\n\
             {as_pg} {BIN}/initdb -D {d}/primary -U postgres --auth=trust >{d}/initdb.log 2>&1\n\
             {as_pg} {BIN}/pg_ctl -D {d}/primary -o '{}' -l {d}/primary.log -w start >/dev/null\n\
             {as_pg} {BIN}/pg_basebackup -h 127.0.0.1 -p {primary_port} -U postgres -D {d}/replica -R -X stream -c fast\n\
             {as_pg} {BIN}/pg_ctl -D {d}/replica -o '{}' -l {d}/replica.log -w start >/dev/null\n\
             touch {d}/ready\n\
             set +e\n\
             while kill -0 {} 2>/dev/null; do sleep 0.5; done\n\
             {as_pg} {BIN}/pg_ctl -D {d}/replica -m immediate stop\n\
             {as_pg} {BIN}/pg_ctl -D {d}/primary -m immediate stop\n\
             rm -rf {d}\n",
            options(primary_port),
            options(replica_port),
            std::process::id()
        );
        #[expect(
            clippy::zombie_processes,
            reason = "the watchdog outlives every test and ends with the test binary"
        )]
        let _watchdog = Command::new("bash")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("watchdog.log")).expect("a log"))
            .process_group(0)
            .spawn()
            .expect("bash starts the pair");
        let started = Instant::now();
        while !dir.join("ready").exists() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the primary and its replica did not start within 120 s: {}",
                std::fs::read_to_string(dir.join("watchdog.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            primary_port,
            replica_port,
            dir,
        }
    }

    pub(crate) fn primary_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.primary_port
        )
    }

    pub(crate) fn replica_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.replica_port
        )
    }

    /// A migrated database of its own on the primary (and so on the replica): its name.
    pub(crate) async fn migrated_database(&self, prefix: &str) -> String {
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        let mut admin = connect(&self.primary_url("postgres")).await;
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the database");
        supportdesk::db::run_migrations(secrecy::SecretString::from(self.primary_url(&name)))
            .await
            .expect("migrate it");
        name
    }

    /// Starts the replica again after [`ReplicaPair::stop_replica`]: it catches up by streaming.
    pub(crate) fn start_replica(&self) {
        self.start_server("replica", self.replica_port);
    }

    /// Stops the replica at once, as a crash would.
    pub(crate) fn stop_replica(&self) {
        self.stop_server("replica");
    }

    /// Stops the primary at once, as a crash would: every connection cut, new ones refused.
    pub(crate) fn stop_primary(&self) {
        self.stop_server("primary");
    }

    /// Starts the primary again after [`ReplicaPair::stop_primary`] (crash recovery first); the
    /// replica reconnects to it by itself.
    pub(crate) fn start_primary(&self) {
        self.start_server("primary", self.primary_port);
    }

    /// [`ReplicaPair::start_primary`] with `setting` (`name=value`) given on its command line,
    /// over whatever its configuration files say (`ALTER SYSTEM` included).
    pub(crate) fn start_primary_with(&self, setting: &str) {
        self.start_server_with("primary", self.primary_port, &format!(" -c {setting}"));
    }

    fn start_server(&self, server: &str, port: u16) {
        self.start_server_with(server, port, "");
    }

    fn start_server_with(&self, server: &str, port: u16, more_options: &str) {
        let started = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{BIN}/pg_ctl")])
            .args(["-D", &self.dir.join(server).display().to_string()])
            .args([
                "-o",
                &format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1{more_options}",
                    self.dir.display()
                ),
            ])
            .args([
                "-l",
                &self.dir.join(format!("{server}.log")).display().to_string(),
            ])
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(started.success(), "the {server} starts again");
    }

    fn stop_server(&self, server: &str) {
        let stopped = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{BIN}/pg_ctl")])
            .args(["-D", &self.dir.join(server).display().to_string()])
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(stopped.success(), "the {server} stops");
    }

    /// Waits until the replica has replayed everything the primary has written.
    pub(crate) async fn wait_for_replay(&self) {
        let mut primary = connect(&self.primary_url("postgres")).await;
        let target: Lsn = diesel::sql_query("SELECT pg_current_wal_lsn()::text AS lsn")
            .get_result(&mut primary)
            .await
            .expect("the primary's position");
        super::wait_until("the replica replays the primary", super::PATIENCE, || {
            let url = self.replica_url("postgres");
            let target = target.lsn.clone();
            async move {
                let mut replica = connect(&url).await;
                let caught_up: Caught =
                    diesel::sql_query("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS caught_up")
                        .bind::<diesel::sql_types::Text, _>(target)
                        .get_result(&mut replica)
                        .await
                        .expect("the replica's position");
                caught_up.caught_up
            }
        })
        .await;
    }
}

#[derive(diesel::QueryableByName)]
struct Lsn {
    #[diesel(sql_type = diesel::sql_types::Text)]
    lsn: String,
}

#[derive(diesel::QueryableByName)]
struct Caught {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    caught_up: bool,
}

pub(crate) async fn connect(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url)
        .await
        .unwrap_or_else(|error| panic!("connect to {url}: {error}"))
}
