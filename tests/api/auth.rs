//! Authentication and the HTTP surface: key headers, 401s, trace ids, GraphiQL, health, GET rules.
use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};

const VIEWER: &str = "{ viewer { organization { handle } } }";

/// POSTs `VIEWER` with one raw header (or none) and returns the outcome.
async fn viewer_with_header(app: &TestApp, header: Option<(&str, String)>) -> GqlResponse {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.url))
        .json(&json!({ "query": VIEWER }));
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("JSON body");
    GqlResponse { status, body }
}

fn assert_unauthenticated(r: &GqlResponse) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.code(), "UNAUTHENTICATED");
    assert!(
        r.error()["extensions"]["traceId"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "no traceId: {}",
        r.body
    );
}

#[tokio::test]
async fn a_key_is_accepted_in_each_of_the_three_header_forms() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let forms = [
        ("authorization", format!("Bearer {key}")),
        ("x-api-key", key.clone()),
        ("authorization", format!("Token {key}")),
    ];

    for (name, value) in forms {
        let r = viewer_with_header(&app, Some((name, value.clone()))).await;

        assert_eq!(r.status, 200, "{name}: {value} → {}", r.body);
        assert_eq!(r.data()["viewer"]["organization"]["handle"], "default");
    }
}

#[tokio::test]
async fn a_request_without_a_key_is_refused_with_401() {
    let app = TestApp::spawn().await;

    let r = app.gql_as(None, VIEWER, json!({})).await;

    assert_unauthenticated(&r);
}

#[tokio::test]
async fn an_unknown_key_is_refused_with_401_in_every_header_form() {
    let app = TestApp::spawn().await;
    let unknown = "msk_this-key-was-never-issued-000000000000".to_string();
    let forms = [
        ("authorization", format!("Bearer {unknown}")),
        ("x-api-key", unknown.clone()),
        ("authorization", format!("Token {unknown}")),
    ];

    for (name, value) in forms {
        let r = viewer_with_header(&app, Some((name, value))).await;

        assert_unauthenticated(&r);
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_with_401() {
    let app = TestApp::spawn().await;
    let (user_id, _) = app.user("revokee", false).await;
    let created = app
        .gql(
            "mutation($u:ID!){ createApiKey(input:{userId:$u,name:\"soon gone\"}){ key apiKey{ id } } }",
            json!({ "u": user_id }),
        )
        .await;
    let key = created.data()["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let key_id = created.data()["createApiKey"]["apiKey"]["id"].clone();
    assert_eq!(app.gql_as(Some(&key), VIEWER, json!({})).await.status, 200);

    let revoked = app
        .gql(
            "mutation($id:ID!){ revokeApiKey(id:$id) }",
            json!({ "id": key_id }),
        )
        .await;
    let after = app.gql_as(Some(&key), VIEWER, json!({})).await;

    assert_eq!(revoked.data()["revokeApiKey"], key_id);
    assert_unauthenticated(&after);
}

#[tokio::test]
async fn every_error_carries_a_trace_id() {
    let app = TestApp::spawn().await;
    let responses = [
        // Unauthenticated.
        app.gql_as(None, VIEWER, json!({})).await,
        // A service error (validation).
        app.gql(
            "mutation{ createSpace(input:{name:\"   \"}){ id } }",
            json!({}),
        )
        .await,
        // A resolver error (not found).
        app.gql(
            "query($id:ID!){ space(id:$id){ id } }",
            json!({ "id": uuid::Uuid::now_v7().to_string() }),
        )
        .await,
        // An error of the GraphQL engine itself (unknown field).
        app.gql("{ viewer { noSuchField } }", json!({})).await,
        // A syntax error.
        app.gql("{ viewer { ", json!({})).await,
    ];

    for r in &responses {
        let errors = r.body["errors"].as_array().expect("errors present");
        assert!(!errors.is_empty(), "{}", r.body);
        for e in errors {
            assert!(
                e["extensions"]["traceId"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty()),
                "no traceId: {}",
                r.body
            );
            assert!(e["extensions"]["code"].is_string(), "no code: {}", r.body);
        }
    }
}

#[tokio::test]
async fn graphiql_is_served_to_a_browser_without_a_key() {
    let app = TestApp::spawn().await;

    let resp = app
        .client
        .get(format!("{}/graphql", app.url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = resp.text().await.unwrap();
    assert!(
        html.to_lowercase().contains("graphiql"),
        "not GraphiQL: {html}"
    );
}

#[tokio::test]
async fn healthz_answers_200_without_a_key() {
    let app = TestApp::spawn().await;

    let resp = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn a_query_over_get_works_but_a_mutation_over_get_is_refused_with_405() {
    let app = TestApp::spawn().await;
    let get = |query: &str| {
        let url =
            reqwest::Url::parse_with_params(&format!("{}/graphql", app.url), &[("query", query)])
                .unwrap();
        app.client
            .get(url)
            .bearer_auth(&app.admin_key)
            .header("accept", "application/json")
            .send()
    };

    let query = get(VIEWER).await.unwrap();
    let mutation = get("mutation { createRole(input:{name:\"via-get\"}) { id } }")
        .await
        .unwrap();

    assert_eq!(query.status().as_u16(), 200);
    let body: Value = query.json().await.unwrap();
    assert_eq!(body["data"]["viewer"]["organization"]["handle"], "default");
    assert_eq!(mutation.status().as_u16(), 405);
    let refused: Value = mutation.json().await.unwrap();
    assert!(
        refused["errors"][0]["extensions"]["traceId"].is_string(),
        "{refused}"
    );
    let roles_left = app
        .gql(
            "mutation{ createRole(input:{name:\"via-get\"}){ id } }",
            json!({}),
        )
        .await;
    assert!(
        roles_left.body["errors"].is_null(),
        "the refused GET must not have created the role: {}",
        roles_left.body
    );
}
