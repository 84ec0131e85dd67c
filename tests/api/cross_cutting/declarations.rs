//! Every RPC's declaration (`option (supportdesk.v1.method)`) is honoured: each test walks the
//! whole method table, so a new RPC is checked the moment it is declared, and a declaration that
//! no code honours fails here. The REST success status and idempotency are checked RPC by RPC
//! through Envoy in `contract.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use supportdesk::configuration::RateQuota;
use supportdesk::domain::Role;
use supportdesk::errors::Reason;
use supportdesk::wire::methods::{Access, Idempotency, Method, MethodTable, Quota};
use supportdesk::wire::proto::v1;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::support::{
    PATIENCE, RawBytes, TestApp, error_reason, keyed, redis_url, repository_root, violated_fields,
};

fn table() -> &'static MethodTable {
    MethodTable::get().expect("the method table loads")
}

/// Calls `method` with an empty request message, as anyone could, with `token` if any.
async fn call_with_empty_message(
    channel: &Channel,
    method: &Method,
    token: Option<&str>,
) -> Result<MetadataMap, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("the channel is ready");
    let mut request = tonic::Request::new(());
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
    }
    let path = method.path.parse().expect("a path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    // As a server stream, which a unary response also is: ExportTickets answers any number of
    // messages, and only the headers matter here.
    grpc.server_streaming(request, path, codec)
        .await
        .map(|response| response.metadata().clone())
}

/// Protobuf that no message decodes: field 1 with wire type 7, which does not exist.
const UNDECODABLE: [u8; 2] = [0x0f, 0x01];

/// Calls `method` with [`UNDECODABLE`] as its message, with `token`.
async fn call_with_undecodable_message(
    channel: &Channel,
    method: &Method,
    token: &str,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("the channel is ready");
    let mut request = tonic::Request::new(UNDECODABLE.to_vec());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    // A key where one is required, so that only the message can be at fault.
    if method.idempotency == Idempotency::Required {
        request = keyed(request);
    }
    let path = method.path.parse().expect("a path");
    grpc.unary(request, path, RawBytes).await.map(drop)
}

/// The credentials a call to `method` needs: none for a public RPC, the admin's otherwise.
/// The tokens to call with: the admin's, and for Logout and LogoutAll (which end the caller's
/// sessions at once, access tokens included) users of their own, so that the admin's token
/// outlives them whatever the order of the calls.
struct Callers {
    admin: String,
    logout: String,
    logout_all: String,
}

impl Callers {
    async fn of(app: &TestApp) -> Self {
        Self {
            admin: app.admin.access_token.clone(),
            logout: app
                .add_user(&app.admin, v1::UserRole::Customer)
                .await
                .access_token,
            logout_all: app
                .add_user(&app.admin, v1::UserRole::Customer)
                .await
                .access_token,
        }
    }

    fn credentials_for(&self, method: &Method) -> Option<&str> {
        match (method.access, method.path.as_str()) {
            (Access::Public, _) => None,
            (Access::Authenticated, "/supportdesk.v1.AuthService/Logout") => Some(&self.logout),
            (Access::Authenticated, "/supportdesk.v1.AuthService/LogoutAll") => {
                Some(&self.logout_all)
            }
            (Access::Authenticated, _) => Some(&self.admin),
        }
    }
}

async fn channel_to(app: &TestApp) -> Channel {
    Channel::from_shared(format!("http://{}", app.address))
        .expect("a valid uri")
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn only_rpcs_declared_public_answer_without_credentials() {
    let app = TestApp::spawn().await;
    let channel = channel_to(&app).await;
    for method in table().api_methods() {
        let reason = match call_with_empty_message(&channel, method, None).await {
            Ok(_) => None,
            Err(status) => error_reason(&status),
        };
        match method.access {
            Access::Public => assert_ne!(
                reason,
                Some(Reason::MissingCredentials),
                "{} is declared public but asked for credentials",
                method.path
            ),
            Access::Authenticated => assert_eq!(
                reason,
                Some(Reason::MissingCredentials),
                "{} is declared authenticated",
                method.path
            ),
        }
    }
}

#[tokio::test]
async fn every_rpc_counts_against_the_quota_it_declares() {
    // Counted where the limiter keeps its counts: the quota keys in Redis that a call moved,
    // besides the quota its answer names in ratelimit-policy. Every quota is 1,000 per 10 hours,
    // so each counted call moves its key's theoretical arrival time by exactly 36 s, and a key
    // lives (its TTL is that time) well past the scan that follows the call.
    let app = TestApp::spawn_with(|settings| {
        let limits = &mut settings.rate_limits;
        for quota in [
            &mut limits.read,
            &mut limits.write,
            &mut limits.public,
            &mut limits.login,
            &mut limits.login_attempt,
            &mut limits.login_name,
            &mut limits.auth_failure,
            &mut limits.webhook,
        ] {
            *quota = RateQuota {
                count: 1_000,
                window: Duration::from_secs(36_000),
            };
        }
    })
    .await;
    const INTERVAL_MS: i64 = 36_000;
    let channel = channel_to(&app).await;
    let callers = Callers::of(&app).await;
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    // Reflection and health's Watch are streams; health's Check speaks for infrastructure.
    let unary = table()
        .methods()
        .filter(|method| !method.path.contains("ServerReflection") && method.name != "Watch");
    for method in unary {
        let before = quota_counts(&mut redis, &app.redis_prefix).await;
        let metadata = match call_with_empty_message(
            &channel,
            method,
            callers.credentials_for(method),
        )
        .await
        {
            Ok(metadata) => metadata,
            Err(status) => status.metadata().clone(),
        };
        let after = quota_counts(&mut redis, &app.redis_prefix).await;
        let moved: Vec<(&String, i64)> = after
            .iter()
            .filter(|(key, count)| before.get(*key) != Some(*count))
            .map(|(key, count)| (key, *count))
            .collect();
        for (key, count) in &moved {
            if let Some(earlier) = before.get(*key) {
                assert_eq!(
                    count - earlier,
                    INTERVAL_MS,
                    "{}: {key} spent exactly one request",
                    method.path
                );
            }
        }
        let spent: BTreeSet<&str> = moved
            .iter()
            .map(|(key, _)| key.split(':').next().expect("a policy"))
            .collect();
        let expected = match method.quota {
            Quota::Exempt => None,
            Quota::Read => Some("read"),
            Quota::Write => Some("write"),
            Quota::Public => Some("public"),
            // Login counts attempts on a login name and failures after them (rate_limits.rs
            // tests each); an empty request names nobody and is refused before either.
            Quota::Login => None,
            Quota::Webhook => Some("webhook"),
        };
        assert_eq!(
            spent,
            expected.into_iter().collect(),
            "{}: the quotas whose counts in Redis moved",
            method.path
        );
        let policy = metadata
            .get("ratelimit-policy")
            .map(|value| value.to_str().expect("ascii").to_owned());
        let named = match method.quota {
            Quota::Login => Some("login"),
            Quota::Exempt | Quota::Read | Quota::Write | Quota::Public | Quota::Webhook => expected,
        };
        assert_eq!(
            policy
                .as_deref()
                .and_then(|policy| policy.split('"').nth(1)),
            named,
            "{}: the quota named by ratelimit-policy",
            method.path
        );
    }
}

/// The limiter's counts in Redis under `prefix`: `policy:subject` → its theoretical arrival
/// time (GCRA, in ms).
async fn quota_counts(
    redis: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> std::collections::BTreeMap<String, i64> {
    let pattern = format!("{prefix}rl:*");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(redis)
        .await
        .expect("KEYS");
    let mut counts = std::collections::BTreeMap::new();
    for key in keys {
        let value: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(redis)
            .await
            .expect("GET");
        let Some(value) = value else { continue };
        let name = key[pattern.len() - 1..].to_owned();
        let tat = value
            .parse()
            .unwrap_or_else(|_| panic!("{name} holds {value}"));
        counts.insert(name, tat);
    }
    counts
}

#[tokio::test]
async fn only_rpcs_that_require_an_idempotency_key_refuse_a_call_without_one() {
    let app = TestApp::spawn().await;
    let channel = channel_to(&app).await;
    let callers = Callers::of(&app).await;
    for method in table().api_methods() {
        let refused_for_the_key = match call_with_empty_message(
            &channel,
            method,
            callers.credentials_for(method),
        )
        .await
        {
            Ok(_) => false,
            Err(status) => {
                status.code() == Code::InvalidArgument
                    && violated_fields(&status) == ["idempotency-key"]
            }
        };
        assert_eq!(
            refused_for_the_key,
            method.idempotency == Idempotency::Required,
            "{}: declared {:?}",
            method.path,
            method.idempotency
        );
    }
}

#[tokio::test]
async fn a_caller_below_the_declared_role_is_refused_before_the_request_is_read() {
    // The message cannot be decoded: a caller the role admits is told so (MALFORMED_MESSAGE), so
    // a caller below it who is told ROLE_REQUIRED was refused before the message was read.
    let app = TestApp::spawn().await;
    let channel = channel_to(&app).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let callers = [
        (&customer, Role::Customer),
        (&agent, Role::Agent),
        (&app.admin, Role::Admin),
    ];
    let mut checked = 0;
    for method in table().api_methods() {
        let Some(least) = method.role else { continue };
        for (caller, role) in callers {
            let status = call_with_undecodable_message(&channel, method, &caller.access_token)
                .await
                .expect_err("no message of the API decodes from these bytes");
            let expected = if role < least {
                Reason::RoleRequired
            } else {
                Reason::MalformedMessage
            };
            assert_eq!(
                error_reason(&status),
                Some(expected),
                "{} declares {least:?}; a {role:?} got {status:?}",
                method.path
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no RPC declares a role");
}

#[tokio::test]
async fn health_answers_for_every_api_service_the_proto_declares() {
    let app = TestApp::spawn().await;
    app.wait_for_health("Serving", PATIENCE).await;
    for service in table().api_services() {
        // The test app sends no email: NotificationService says so (docs/notifications.md),
        // every other service serves.
        let expected = if service == supportdesk::providers::email::HEALTH_SERVICE_NAME {
            "NotServing"
        } else {
            "Serving"
        };
        assert_eq!(app.health_of(service).await, expected, "{service}");
    }
}

#[test]
fn envoy_transcodes_exactly_the_api_services_of_the_proto() {
    let config = std::fs::read_to_string(repository_root().join("deploy/envoy/envoy.yaml"))
        .expect("deploy/envoy/envoy.yaml");
    let mut lines = config.lines().skip_while(|line| line.trim() != "services:");
    lines.next();
    let listed: BTreeSet<&str> = lines
        .map_while(|line| line.trim().strip_prefix("- "))
        .collect();
    let declared: BTreeSet<&str> = table().api_services().into_iter().collect();
    assert_eq!(listed, declared, "the services: list of envoy.yaml");
}

#[test]
fn an_rpc_without_a_declaration_stops_the_table_from_loading() {
    use prost::Message;
    // prost_types keeps no extension options: re-encoding the set strips every declaration.
    let stripped =
        prost_types::FileDescriptorSet::decode(supportdesk::wire::proto::FILE_DESCRIPTOR_SET)
            .expect("decodes")
            .encode_to_vec();
    let error = MethodTable::from_descriptor_sets(&stripped, &[])
        .expect_err("a table without declarations");
    assert!(
        error.to_string().contains(
            "supportdesk.v1.TicketService.CreateTicket: no (supportdesk.v1.method) option"
        ),
        "{error}"
    );
}
