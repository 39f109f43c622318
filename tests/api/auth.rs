use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn a_request_without_a_key_is_refused_with_401() {
    let app = TestApp::spawn().await;
    let r = app.gql_as(None, "{ viewer { organization { handle } } }", json!({})).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "UNAUTHENTICATED");
}
