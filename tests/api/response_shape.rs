//! Responses keep the shape the schema promises (GraphQL spec, "Handling Field Errors" and
//! "Errors and Non-Nullability"): a failed nullable field is `null` beside its siblings, a failed
//! non-null field nulls its nearest nullable parent (or `data`), and a request error has no
//! `data` entry. Each case pairs the failing field with a sibling and checks the exact JSON.
use serde_json::{json, Value};

use crate::common::TestApp;

const UNKNOWN: &str = "0190a0a0-0000-7000-8000-000000000000";

/// `errors` reduced to (path, code): what a client keys on.
fn errors(body: &Value) -> Vec<(Value, String)> {
    body["errors"]
        .as_array()
        .map(|errs| {
            errs.iter()
                .map(|e| {
                    (
                        e["path"].clone(),
                        e["extensions"]["code"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn org_id(app: &TestApp, key: &str) -> Value {
    app.gql_as(Some(key), "{ viewer { organization { id } } }", json!({}))
        .await
        .data()["viewer"]["organization"]["id"]
        .clone()
}

#[tokio::test]
async fn an_unknown_id_nulls_its_root_field_and_keeps_the_sibling() {
    let app = TestApp::spawn().await;
    let org = org_id(&app, &app.admin_key).await;
    for field in ["space", "memory", "workspace"] {
        let alone = app
            .gql(
                &format!("{{ {field}(id: \"{UNKNOWN}\") {{ id }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(alone.status, 200);
        assert_eq!(alone.body["data"], json!({ field: null }), "{}", alone.body);
        assert_eq!(
            errors(&alone.body),
            vec![(json!([field]), "NOT_FOUND".into())]
        );

        let beside = app
            .gql(
                &format!(
                    "{{ viewer {{ organization {{ id }} }} {field}(id: \"{UNKNOWN}\") {{ id }} }}"
                ),
                json!({}),
            )
            .await;
        assert_eq!(
            beside.body["data"],
            json!({ "viewer": { "organization": { "id": org } }, field: null }),
            "{}",
            beside.body
        );
        assert_eq!(
            errors(&beside.body),
            vec![(json!([field]), "NOT_FOUND".into())]
        );
    }
}

#[tokio::test]
async fn a_non_owner_gets_null_tokens_and_the_rest_of_the_space_in_a_lookup_and_a_list() {
    let app = TestApp::spawn().await;
    let space = app
        .space_as(
            &app.admin_key,
            "shared",
            json!({ "accessMode": "ORGANIZATION" }),
        )
        .await;
    let (_, reader) = app.user("reader", false).await;

    let one = app
        .gql_as(
            Some(&reader),
            "query($s: ID!) { space(id: $s) { id name tokens { id } } }",
            json!({ "s": space }),
        )
        .await;
    assert_eq!(
        one.body["data"],
        json!({ "space": { "id": space, "name": "shared", "tokens": null } }),
        "{}",
        one.body
    );
    assert_eq!(
        errors(&one.body),
        vec![(json!(["space", "tokens"]), "OWNER_ONLY".into())]
    );

    let list = app
        .gql_as(
            Some(&reader),
            "{ spaces(first: 5) { edges { node { id tokens { id } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        list.body["data"],
        json!({ "spaces": { "edges": [ { "node": { "id": space, "tokens": null } } ] } }),
        "{}",
        list.body
    );
    assert_eq!(
        errors(&list.body),
        vec![(
            json!(["spaces", "edges", 0, "node", "tokens"]),
            "OWNER_ONLY".into()
        )]
    );

    // The owner sees the list, with no error.
    let owner = app
        .gql(
            "query($s: ID!) { space(id: $s) { tokens { id } } }",
            json!({ "s": space }),
        )
        .await;
    assert_eq!(owner.data()["space"]["tokens"], json!([]));
}

#[tokio::test]
async fn a_space_token_gets_a_null_viewer_beside_its_space() {
    let app = TestApp::spawn().await;
    let space = app.space_as(&app.admin_key, "tokened", json!({})).await;
    let (_, token) = app
        .space_token_as(&app.admin_key, &space, "VIEW", None)
        .await;
    let r = app
        .gql_as(
            Some(&token),
            "query($s: ID!) { viewer { organization { id } } space(id: $s) { id } }",
            json!({ "s": space }),
        )
        .await;
    assert_eq!(
        r.body["data"],
        json!({ "viewer": null, "space": { "id": space } }),
        "{}",
        r.body
    );
    assert_eq!(
        errors(&r.body),
        vec![(json!(["viewer"]), "FORBIDDEN".into())]
    );
}

#[tokio::test]
async fn a_failed_non_null_root_field_nulls_data_and_keeps_one_error() {
    let app = TestApp::spawn().await;
    let r = app
        .gql(
            "mutation { createSpace(input: { name: \"\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    let body = r.body.as_object().unwrap();
    assert!(
        body.contains_key("data"),
        "an executed request has data: {}",
        r.body
    );
    assert_eq!(r.body["data"], Value::Null);
    assert_eq!(
        errors(&r.body),
        vec![(json!(["createSpace"]), "VALIDATION_ERROR".into())]
    );
}

#[tokio::test]
async fn a_missing_required_variable_is_a_request_error_without_data() {
    let app = TestApp::spawn().await;
    for variables in [json!({}), json!({ "s": null })] {
        let r = app
            .gql("query($s: ID!) { space(id: $s) { id } }", variables.clone())
            .await;
        assert_eq!(r.status, 200, "application/json keeps 200: {}", r.body);
        let body = r.body.as_object().unwrap();
        assert!(!body.contains_key("data"), "no data entry: {}", r.body);
        assert_eq!(r.code(), "GRAPHQL_VALIDATION_FAILED", "{}", r.body);
        assert!(
            r.error()["message"].as_str().unwrap().contains("$s"),
            "the message names the variable: {}",
            r.body
        );
    }
    // A default value or an optional variable is fine.
    let r = app
        .gql(
            &format!("query($s: ID! = \"{UNKNOWN}\", $f: Int) {{ space(id: $s) {{ id }} spaces(first: $f) {{ totalCount }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(r.body["data"]["space"], Value::Null, "{}", r.body);
    assert_eq!(
        errors(&r.body),
        vec![(json!(["space"]), "NOT_FOUND".into())]
    );

    // With the GraphQL-over-HTTP media type, a request error is a 4xx.
    let resp = app
        .client
        .post(format!("{}/graphql", app.url))
        .bearer_auth(&app.admin_key)
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": "query($s: ID!) { space(id: $s) { id } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(body.get("data").is_none(), "{body}");
}
