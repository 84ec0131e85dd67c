//! Compression: gzip and zstd on gRPC when the client asks (and never when it does not), and
//! gzip from Envoy for REST JSON over 1 KiB to clients that accept it.

use supportdesk::wire::proto::v1;
use tonic::codec::CompressionEncoding;

use crate::support::TestApp;
use crate::support::envoy::Envoy;

async fn a_page(app: &TestApp, accept: Option<CompressionEncoding>) -> Option<String> {
    let mut client = app.tickets.clone();
    if let Some(encoding) = accept {
        client = client.accept_compressed(encoding);
    }
    let response = client
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            page_size: 100,
            ..Default::default()
        }))
        .await
        .expect("a page");
    assert_eq!(
        response.get_ref().tickets.len(),
        30,
        "decoded whatever the encoding"
    );
    response
        .metadata()
        .get("grpc-encoding")
        .map(|value| value.to_str().expect("ASCII").to_owned())
}

#[tokio::test]
async fn grpc_responses_are_compressed_with_the_encoding_the_client_accepts() {
    let app = TestApp::spawn().await;
    for n in 0..30 {
        app.create_ticket(&format!("compressed {n}")).await;
    }
    assert_eq!(
        a_page(&app, Some(CompressionEncoding::Gzip))
            .await
            .as_deref(),
        Some("gzip")
    );
    assert_eq!(
        a_page(&app, Some(CompressionEncoding::Zstd))
            .await
            .as_deref(),
        Some("zstd")
    );
    assert_eq!(a_page(&app, None).await, None, "identity unless asked");

    // A compressed request is accepted too.
    let created = app
        .tickets
        .clone()
        .send_compressed(CompressionEncoding::Gzip)
        .create_ticket(app.as_admin(crate::support::valid_create_request("sent gzipped")))
        .await
        .expect("a gzip request is decoded")
        .into_inner();
    assert_eq!(created.subject, "sent gzipped");
}

#[tokio::test]
async fn envoy_gzips_rest_json_over_one_kibibyte_for_clients_that_accept_it() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    let ticket = app.create_ticket("small").await;
    for n in 0..20 {
        app.create_ticket(&format!("listed {n}")).await;
    }

    let get = |path: String, accept: Option<&'static str>| {
        let mut request = http
            .get(envoy.url(&path))
            .bearer_auth(&app.admin.access_token);
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        request.send()
    };
    let big = get("/v1/tickets?pageSize=100".to_owned(), Some("gzip"))
        .await
        .expect("a page");
    assert_eq!(big.status(), reqwest::StatusCode::OK);
    assert_eq!(
        big.headers()
            .get("content-encoding")
            .map(|value| value.to_str().unwrap()),
        Some("gzip")
    );
    let bytes = big.bytes().await.expect("the body");
    assert_eq!(&bytes[..2], [0x1f, 0x8b], "a gzip stream");

    let plain = get("/v1/tickets?pageSize=100".to_owned(), None)
        .await
        .expect("a page");
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.expect("the body");
    assert!(plain.len() > 1024, "the page is over 1 KiB");
    assert!(
        bytes.len() < plain.len() / 2,
        "{} vs {}",
        bytes.len(),
        plain.len()
    );

    let small = get(
        format!("/v1/tickets/{}?readMask=id", ticket.id),
        Some("gzip"),
    )
    .await
    .expect("a ticket");
    assert_eq!(small.status(), reqwest::StatusCode::OK);
    assert!(
        small.headers().get("content-encoding").is_none(),
        "under 1 KiB stays plain"
    );
}
