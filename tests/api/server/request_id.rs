//! Every response carries an `x-request-id`: the caller's, or one the service made up.

use supportdesk::wire::proto::v1;

use crate::support::TestApp;

#[tokio::test]
async fn a_request_without_an_id_gets_one_in_the_response() {
    let app = TestApp::spawn().await;
    let response = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest::default()))
        .await
        .expect("listed");
    let id = response
        .metadata()
        .get("x-request-id")
        .expect("an x-request-id")
        .to_str()
        .unwrap();
    assert!(uuid::Uuid::try_parse(id).is_ok(), "{id} is a UUID");
}

#[tokio::test]
async fn the_callers_request_id_comes_back_even_on_errors() {
    let app = TestApp::spawn().await;
    let mut request = tonic::Request::new(v1::GetTicketRequest {
        id: "bad".to_owned(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-request-id", "caller-chosen-1".parse().unwrap());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.admin.access_token)
            .parse()
            .unwrap(),
    );
    let status = app
        .tickets
        .clone()
        .get_ticket(request)
        .await
        .expect_err("invalid id");
    assert_eq!(
        status.metadata().get("x-request-id").unwrap(),
        "caller-chosen-1"
    );
}
