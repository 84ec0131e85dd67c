//! The service's own gRPC client, for the command line: waiting for a started service to report
//! SERVING and logging in, so that scripts need neither grpcurl loops nor a JSON parser.

use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::wire::proto::v1::LoginRequest;
use crate::wire::proto::v1::auth_service_client::AuthServiceClient;

/// How long one attempt may take: connecting and the call together.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// Asks `addr` for `service`'s health until it answers SERVING or `wait` has passed; the error
/// says what it answered last.
pub async fn healthcheck(addr: &str, service: String, wait: Duration) -> anyhow::Result<()> {
    let endpoint = endpoint(addr)?;
    let deadline = Instant::now() + wait;
    loop {
        let last = match check(&endpoint, service.clone()).await {
            Ok(ServingStatus::Serving) => return Ok(()),
            Ok(status) => anyhow::anyhow!("{addr} answers {}", status.as_str_name()),
            Err(error) => error,
        };
        if Instant::now() + RETRY_INTERVAL > deadline {
            return Err(last.context(format!(
                "{addr} did not report SERVING{}",
                if wait.is_zero() {
                    String::new()
                } else {
                    format!(" within {}s", wait.as_secs())
                }
            )));
        }
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}

async fn check(endpoint: &Endpoint, service: String) -> anyhow::Result<ServingStatus> {
    let channel = connect(endpoint).await?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest { service })
        .await
        .map_err(|status| anyhow::anyhow!("Health/Check failed: {}", status.message()))?;
    Ok(response.into_inner().status())
}

/// Logs in and returns the access token.
pub async fn login(
    addr: &str,
    account: String,
    email: String,
    password: String,
) -> anyhow::Result<String> {
    let channel = connect(&endpoint(addr)?).await?;
    let response = AuthServiceClient::new(channel)
        .login(LoginRequest {
            account,
            email,
            password,
        })
        .await
        .map_err(|status| {
            anyhow::anyhow!("login refused: {:?}: {}", status.code(), status.message())
        })?;
    response
        .into_inner()
        .tokens
        .map(|tokens| tokens.access_token)
        .context("the login answer carries no tokens")
}

fn endpoint(addr: &str) -> anyhow::Result<Endpoint> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    Ok(Endpoint::from_shared(uri)
        .with_context(|| format!("not a gRPC address: {addr}"))?
        .connect_timeout(ATTEMPT_TIMEOUT)
        .timeout(ATTEMPT_TIMEOUT))
}

async fn connect(endpoint: &Endpoint) -> anyhow::Result<Channel> {
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", endpoint.uri()))
}
