//! Spaces: validation, defaults, ownership, uniqueness, pagination, filters, updates, the soft
//! delete life cycle, owner-only operations, visibility across users and organizations, and the
//! number of SQL statements a page costs.
use std::collections::{HashMap, HashSet};

use futures::future::join_all;
use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};

macro_rules! space_fields {
    () => {
        "id name description accessMode labels{ key value } tags \
         owner{ __typename ... on User{ id } ... on Agent{ id } } organization{ handle } \
         embedder{ name dimension kind } chunking{ chunkSize chunkOverlap } viewerPermission \
         createdAt updatedAt deletedAt"
    };
}

const CREATE: &str = concat!(
    "mutation($i:CreateSpaceInput!){ createSpace(input:$i){ ",
    space_fields!(),
    " } }"
);
const GET: &str = concat!("query($id:ID!){ space(id:$id){ ", space_fields!(), " } }");
const UPDATE: &str = concat!(
    "mutation($id:ID!,$i:UpdateSpaceInput!){ updateSpace(id:$id,input:$i){ ",
    space_fields!(),
    " } }"
);
const DELETE: &str = "mutation($id:ID!){ deleteSpace(id:$id){ id deletedAt } }";
const RESTORE: &str = "mutation($id:ID!){ restoreSpace(id:$id){ id deletedAt } }";
const PURGE: &str = "mutation($id:ID!){ purgeSpace(id:$id) }";
const LIST: &str = "query($first:Int,$after:String,$filter:SpaceFilter,$order:SpaceOrder){ \
    spaces(first:$first,after:$after,filter:$filter,orderBy:$order){ \
      totalCount pageInfo{ hasNextPage hasPreviousPage startCursor endCursor } \
      edges{ cursor node{ id name createdAt deletedAt viewerPermission } } } }";

async fn create(app: &TestApp, key: &str, input: Value) -> GqlResponse {
    app.gql_as(Some(key), CREATE, json!({ "i": input })).await
}

async fn get(app: &TestApp, key: &str, id: &str) -> GqlResponse {
    app.gql_as(Some(key), GET, json!({ "id": id })).await
}

async fn update(app: &TestApp, key: &str, id: &str, input: Value) -> GqlResponse {
    app.gql_as(Some(key), UPDATE, json!({ "id": id, "i": input }))
        .await
}

async fn op(app: &TestApp, key: &str, mutation: &str, id: &str) -> GqlResponse {
    app.gql_as(Some(key), mutation, json!({ "id": id })).await
}

/// `spaces(...)` with the given variables (`first`, `after`, `filter`, `order`).
async fn list(app: &TestApp, key: &str, vars: Value) -> GqlResponse {
    app.gql_as(Some(key), LIST, vars).await
}

fn edges(r: &GqlResponse) -> Vec<Value> {
    r.data()["spaces"]["edges"].as_array().unwrap().clone()
}

/// Names of the listed spaces, in list order.
fn names(r: &GqlResponse) -> Vec<String> {
    edges(r)
        .iter()
        .map(|e| e["node"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn sorted_names(r: &GqlResponse) -> Vec<String> {
    let mut n = names(r);
    n.sort();
    n
}

fn ids(r: &GqlResponse) -> Vec<String> {
    edges(r)
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn total(r: &GqlResponse) -> i64 {
    r.data()["spaces"]["totalCount"].as_i64().unwrap()
}

/// The id of the user a key belongs to.
async fn viewer_id(app: &TestApp, key: &str) -> String {
    let r = app
        .gql_as(
            Some(key),
            "{ viewer{ principal{ ... on User{ id } } } }",
            json!({}),
        )
        .await;
    r.data()["viewer"]["principal"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// createSpace: validation and defaults

#[tokio::test]
async fn create_space_refuses_each_broken_rule_naming_the_field() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let labels = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
            .collect()
    };
    let tags = |n: usize| -> Vec<String> { (0..n).map(|i| format!("t{i}")).collect() };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("empty name", json!({"name": ""}), "name"),
        ("whitespace-only name", json!({"name": " \t  "}), "name"),
        (
            "name of 256 characters",
            json!({"name": "n".repeat(256)}),
            "name",
        ),
        (
            "description of 501 characters",
            json!({"name": "d", "description": "d".repeat(501)}),
            "description",
        ),
        (
            "empty label key",
            json!({"name": "l", "labels": [{"key": "", "value": "x"}]}),
            "labels[0].key",
        ),
        (
            "label key of 64 characters",
            json!({"name": "l", "labels": [{"key": "k".repeat(64), "value": "x"}]}),
            "labels[0].key",
        ),
        (
            "65 labels",
            json!({"name": "l", "labels": labels(65)}),
            "labels",
        ),
        (
            "duplicate label keys",
            json!({"name": "l", "labels": [{"key": "team", "value": "a"}, {"key": "team", "value": "b"}]}),
            "labels[1].key",
        ),
        ("51 tags", json!({"name": "t", "tags": tags(51)}), "tags"),
        (
            "tag of 65 characters",
            json!({"name": "t", "tags": ["t".repeat(65)]}),
            "tags[0]",
        ),
        (
            "chunk overlap equal to the chunk size",
            json!({"name": "c", "chunking": {"chunkSize": 100, "chunkOverlap": 100}}),
            "chunking.chunkOverlap",
        ),
        (
            "chunk overlap above the chunk size",
            json!({"name": "c", "chunking": {"chunkSize": 100, "chunkOverlap": 150}}),
            "chunking.chunkOverlap",
        ),
        (
            "unknown embedder",
            json!({"name": "e", "embedder": "no-such-embedder"}),
            "embedder",
        ),
    ];

    for (what, input, field) in cases {
        let r = create(&app, &key, input).await;

        assert_eq!(r.code(), "VALIDATION_ERROR", "{what}: {}", r.body);
        assert_eq!(r.field(), field, "{what}");
    }
    let listed = list(&app, &key, json!({})).await;
    assert_eq!(total(&listed), 0, "no refused space was stored");
}

#[tokio::test]
async fn create_space_accepts_every_value_at_its_limit() {
    let app = TestApp::spawn().await;
    let labels: Vec<Value> = (0..64)
        .map(|i| json!({"key": format!("{i:0>63}"), "value": "v".repeat(255)}))
        .collect();
    let tags: Vec<String> = (0..50).map(|i| format!("{i:0>64}")).collect();

    let r = create(
        &app,
        &app.admin_key,
        json!({
            "name": "n".repeat(255),
            "description": "d".repeat(500),
            "labels": labels,
            "tags": tags,
            "chunking": {"chunkSize": 100, "chunkOverlap": 75},
        }),
    )
    .await;

    let s = &r.data()["createSpace"];
    assert_eq!(s["name"].as_str().unwrap().len(), 255);
    assert_eq!(s["description"].as_str().unwrap().len(), 500);
    assert_eq!(s["labels"].as_array().unwrap().len(), 64);
    assert_eq!(s["tags"].as_array().unwrap().len(), 50);
    assert_eq!(s["chunking"], json!({"chunkSize": 100, "chunkOverlap": 75}));
}

#[tokio::test]
async fn a_space_name_is_stored_trimmed() {
    let app = TestApp::spawn().await;

    let r = create(&app, &app.admin_key, json!({"name": "  Trimmed name \t"})).await;

    assert_eq!(r.data()["createSpace"]["name"], "Trimmed name");
}

#[tokio::test]
async fn a_new_space_has_the_documented_defaults() {
    let app = TestApp::spawn().await;
    let (user_id, key) = app.user("owner", false).await;

    let r = create(&app, &key, json!({"name": "Defaults"})).await;

    let s = &r.data()["createSpace"];
    assert_eq!(s["accessMode"], "PRIVATE");
    assert_eq!(
        s["embedder"],
        json!({"name": "builtin-hash-384", "dimension": 384, "kind": "LEXICAL"})
    );
    assert_eq!(
        s["chunking"],
        json!({"chunkSize": 800, "chunkOverlap": 100})
    );
    assert_eq!(s["owner"], json!({"__typename": "User", "id": user_id}));
    assert_eq!(s["organization"]["handle"], "default");
    assert_eq!(s["viewerPermission"], "OWNER");
    assert!(s["description"].is_null());
    assert_eq!(s["labels"], json!([]));
    assert_eq!(s["tags"], json!([]));
    assert!(s["deletedAt"].is_null());
    assert!(s["createdAt"].is_string() && s["updatedAt"].is_string());
}

#[tokio::test]
async fn labels_come_back_ordered_by_key_and_tags_alphabetically_without_duplicates() {
    let app = TestApp::spawn().await;

    let r = create(
        &app,
        &app.admin_key,
        json!({
            "name": "Ordered",
            "labels": [{"key": "zone", "value": "eu"}, {"key": "app", "value": "kb"}],
            "tags": ["beta", "alpha", "beta", " gamma "],
        }),
    )
    .await;

    let s = &r.data()["createSpace"];
    assert_eq!(
        s["labels"],
        json!([{"key": "app", "value": "kb"}, {"key": "zone", "value": "eu"}])
    );
    assert_eq!(s["tags"], json!(["alpha", "beta", "gamma"]));
}

#[tokio::test]
async fn an_agent_owns_the_spaces_it_creates() {
    let app = TestApp::spawn().await;
    let (agent_id, key) = app.agent("writer-bot").await;

    let r = create(&app, &key, json!({"name": "Agent notes"})).await;

    let s = &r.data()["createSpace"];
    assert_eq!(s["owner"], json!({"__typename": "Agent", "id": agent_id}));
    assert_eq!(s["viewerPermission"], "OWNER");
}

// ---------------------------------------------------------------------------------------------
// Ownership and uniqueness

#[tokio::test]
async fn a_non_admin_cannot_create_a_space_for_another_user() {
    let app = TestApp::spawn().await;
    let (other_id, _) = app.user("other", false).await;
    let (_, key) = app.user("plain", false).await;

    let r = create(&app, &key, json!({"name": "Not mine", "ownerId": other_id})).await;

    assert_eq!(r.code(), "FORBIDDEN");
    assert_eq!(total(&list(&app, &app.admin_key, json!({})).await), 0);
}

#[tokio::test]
async fn an_admin_can_create_a_space_owned_by_a_user() {
    let app = TestApp::spawn().await;
    let (user_id, user_key) = app.user("beneficiary", false).await;

    let r = create(
        &app,
        &app.admin_key,
        json!({"name": "For you", "ownerId": user_id}),
    )
    .await;

    let s = &r.data()["createSpace"];
    assert_eq!(s["owner"], json!({"__typename": "User", "id": user_id}));
    let seen_by_owner = get(&app, &user_key, s["id"].as_str().unwrap()).await;
    assert_eq!(seen_by_owner.data()["space"]["viewerPermission"], "OWNER");
}

#[tokio::test]
async fn a_space_name_is_unique_per_owner_and_case_sensitive() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.user("alice", false).await;
    let (_, bob) = app.user("bob", false).await;
    create(&app, &alice, json!({"name": "Notes"})).await.data();

    let same = create(&app, &alice, json!({"name": "Notes"})).await;
    let same_after_trim = create(&app, &alice, json!({"name": "  Notes  "})).await;
    let other_owner = create(&app, &bob, json!({"name": "Notes"})).await;
    let other_case = create(&app, &alice, json!({"name": "notes"})).await;

    assert_eq!(same.code(), "ALREADY_EXISTS");
    assert_eq!(same_after_trim.code(), "ALREADY_EXISTS");
    assert_eq!(other_owner.data()["createSpace"]["name"], "Notes");
    assert_eq!(other_case.data()["createSpace"]["name"], "notes");
}

#[tokio::test]
async fn of_50_concurrent_creates_of_one_name_exactly_one_wins() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();

    let results = join_all((0..50).map(|_| create(&app, &key, json!({"name": "Contended"})))).await;

    let wins = results
        .iter()
        .filter(|r| r.body["errors"].is_null())
        .count();
    let mut codes: Vec<String> = results
        .iter()
        .filter(|r| !r.body["errors"].is_null())
        .map(|r| r.code())
        .collect();
    codes.dedup();
    assert_eq!(wins, 1, "winners: {wins}");
    assert_eq!(codes, ["ALREADY_EXISTS"]);
    let listed = list(&app, &key, json!({"filter": {"name": "Contended"}})).await;
    assert_eq!(total(&listed), 1);
}

// ---------------------------------------------------------------------------------------------
// Pagination

/// Walks every page of `spaces(first: 7, orderBy: order)`; checks each page's shape on the way.
async fn walk(app: &TestApp, order: Value, expected_total: i64) -> Vec<Value> {
    let mut nodes = Vec::new();
    let mut after: Option<String> = None;
    for page in 0.. {
        assert!(page < 100, "the walk does not end");
        let r = list(
            app,
            &app.admin_key,
            json!({"first": 7, "after": after, "order": order}),
        )
        .await;
        let conn = &r.data()["spaces"];
        let page_edges = edges(&r);
        assert_eq!(total(&r), expected_total, "totalCount on page {page}");
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], page > 0, "page {page}");
        assert!(page_edges.len() <= 7);
        for e in &page_edges {
            nodes.push(e["node"].clone());
        }
        if let (Some(first), Some(last)) = (page_edges.first(), page_edges.last()) {
            assert_eq!(conn["pageInfo"]["startCursor"], first["cursor"]);
            assert_eq!(conn["pageInfo"]["endCursor"], last["cursor"]);
        }
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        assert_eq!(page_edges.len(), 7, "only the last page may be short");
        after = Some(conn["pageInfo"]["endCursor"].as_str().unwrap().to_string());
    }
    nodes
}

fn created_key(node: &Value) -> (chrono::DateTime<chrono::FixedOffset>, String) {
    let at = chrono::DateTime::parse_from_rfc3339(node["createdAt"].as_str().unwrap()).unwrap();
    (at, node["id"].as_str().unwrap().to_string())
}

fn name_key(node: &Value) -> (String, String) {
    (
        node["name"].as_str().unwrap().to_string(),
        node["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn walking_the_pages_of_120_spaces_yields_each_exactly_once_in_every_order() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    // Names in an order unrelated to creation order; digits only, so every collation agrees.
    let created: HashSet<String> = join_all((0..120).map(|i| {
        let (app, key) = (&app, &key);
        let name = format!("s{:03}", (i * 37) % 120);
        async move { app.space_as(key, &name, json!({})).await }
    }))
    .await
    .into_iter()
    .collect();
    assert_eq!(created.len(), 120);

    for (field, direction) in [
        ("CREATED_AT", "DESC"),
        ("CREATED_AT", "ASC"),
        ("NAME", "ASC"),
        ("NAME", "DESC"),
    ] {
        let nodes = walk(&app, json!({"field": field, "direction": direction}), 120).await;

        let seen: Vec<String> = nodes
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(seen.len(), 120, "{field} {direction}");
        assert_eq!(
            seen.iter().cloned().collect::<HashSet<_>>(),
            created,
            "{field} {direction}: every space exactly once"
        );
        let in_order = match (field, direction) {
            ("CREATED_AT", "ASC") => nodes
                .windows(2)
                .all(|w| created_key(&w[0]) < created_key(&w[1])),
            ("CREATED_AT", _) => nodes
                .windows(2)
                .all(|w| created_key(&w[0]) > created_key(&w[1])),
            (_, "ASC") => nodes.windows(2).all(|w| name_key(&w[0]) < name_key(&w[1])),
            _ => nodes.windows(2).all(|w| name_key(&w[0]) > name_key(&w[1])),
        };
        assert!(in_order, "{field} {direction} is out of order");
    }
    let default_order = walk(&app, Value::Null, 120).await;
    assert!(
        default_order
            .windows(2)
            .all(|w| created_key(&w[0]) > created_key(&w[1])),
        "the default order is newest first"
    );
}

#[tokio::test]
async fn page_sizes_are_clamped_instead_of_refused() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        app.space_as(&app.admin_key, &format!("c{i}"), json!({}))
            .await;
    }

    let huge = list(&app, &app.admin_key, json!({"first": 5000})).await;
    let zero = list(&app, &app.admin_key, json!({"first": 0})).await;
    let negative = list(&app, &app.admin_key, json!({"first": -3})).await;
    let default = list(&app, &app.admin_key, json!({})).await;

    assert_eq!(edges(&huge).len(), 3);
    assert_eq!(huge.data()["spaces"]["pageInfo"]["hasNextPage"], false);
    assert_eq!(edges(&zero).len(), 1);
    assert_eq!(zero.data()["spaces"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(total(&zero), 3);
    assert_eq!(edges(&negative).len(), 1);
    assert_eq!(edges(&default).len(), 3);
}

#[tokio::test]
async fn a_malformed_or_foreign_cursor_is_an_invalid_argument() {
    let app = TestApp::spawn().await;
    app.space_as(&app.admin_key, "a", json!({})).await;
    app.space_as(&app.admin_key, "b", json!({})).await;
    let by_name = list(
        &app,
        &app.admin_key,
        json!({"first": 1, "order": {"field": "NAME", "direction": "ASC"}}),
    )
    .await;
    let name_cursor = by_name.data()["spaces"]["pageInfo"]["endCursor"].clone();

    let garbage = list(&app, &app.admin_key, json!({"after": "not a cursor!"})).await;
    let empty = list(&app, &app.admin_key, json!({"after": ""})).await;
    let not_json = list(&app, &app.admin_key, json!({"after": "bm90IGpzb24"})).await;
    let foreign = list(
        &app,
        &app.admin_key,
        json!({"after": name_cursor, "order": {"field": "CREATED_AT"}}),
    )
    .await;

    assert_eq!(garbage.code(), "INVALID_ARGUMENT");
    assert_eq!(empty.code(), "INVALID_ARGUMENT");
    assert_eq!(not_json.code(), "INVALID_ARGUMENT");
    assert_eq!(foreign.code(), "INVALID_ARGUMENT");
}

// ---------------------------------------------------------------------------------------------
// Filters

#[tokio::test]
async fn the_name_filter_is_a_case_sensitive_glob() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    for name in [
        "Research",
        "Research notes",
        "research lower",
        "My Research",
        "team-kb1",
        "kb2",
        "ML-KB3",
        "team-kb12",
        "kb",
        "50% off",
        "50x off",
        "a_b",
        "axb",
    ] {
        app.space_as(&key, name, json!({})).await;
    }
    let by_glob = |glob: &'static str| {
        let app = &app;
        let key = key.clone();
        async move { list(app, &key, json!({"filter": {"name": glob}})).await }
    };

    let research = by_glob("Research*").await;
    let research_lower = by_glob("research*").await;
    let kb = by_glob("*kb?").await;
    let kb_upper = by_glob("*KB?").await;
    let percent = by_glob("50%*").await;
    let underscore = by_glob("a_b").await;
    let exact = by_glob("kb").await;

    assert_eq!(sorted_names(&research), ["Research", "Research notes"]);
    assert_eq!(total(&research), 2);
    assert_eq!(sorted_names(&research_lower), ["research lower"]);
    assert_eq!(sorted_names(&kb), ["kb2", "team-kb1"]);
    assert_eq!(total(&kb), 2);
    assert_eq!(sorted_names(&kb_upper), ["ML-KB3"]);
    assert_eq!(sorted_names(&percent), ["50% off"], "% is literal");
    assert_eq!(sorted_names(&underscore), ["a_b"], "_ is literal");
    assert_eq!(sorted_names(&exact), ["kb"]);
}

#[tokio::test]
async fn every_label_of_the_filter_must_match() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let label = |k: &str, v: &str| json!({"key": k, "value": v});
    app.space_as(
        &key,
        "ml-prod",
        json!({"labels": [label("team", "ml"), label("env", "prod")]}),
    )
    .await;
    app.space_as(
        &key,
        "ml-dev",
        json!({"labels": [label("team", "ml"), label("env", "dev")]}),
    )
    .await;
    app.space_as(&key, "web", json!({"labels": [label("team", "web")]}))
        .await;
    app.space_as(&key, "bare", json!({})).await;

    let team_ml = list(
        &app,
        &key,
        json!({"filter": {"labels": [label("team", "ml")]}}),
    )
    .await;
    let ml_prod = list(
        &app,
        &key,
        json!({"filter": {"labels": [label("team", "ml"), label("env", "prod")]}}),
    )
    .await;
    let conflicting = list(
        &app,
        &key,
        json!({"filter": {"labels": [label("team", "ml"), label("team", "web")]}}),
    )
    .await;
    let value_mismatch = list(
        &app,
        &key,
        json!({"filter": {"labels": [label("env", "qa")]}}),
    )
    .await;

    assert_eq!(sorted_names(&team_ml), ["ml-dev", "ml-prod"]);
    assert_eq!(total(&team_ml), 2);
    assert_eq!(sorted_names(&ml_prod), ["ml-prod"]);
    assert_eq!(total(&ml_prod), 1);
    assert_eq!(
        conflicting.code(),
        "VALIDATION_ERROR",
        "a key twice is refused"
    );
    assert_eq!(total(&value_mismatch), 0);
}

#[tokio::test]
async fn the_tags_filter_matches_any_tag_by_default_or_all_of_them() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    app.space_as(&key, "ab", json!({"tags": ["a", "b"]})).await;
    app.space_as(&key, "bc", json!({"tags": ["b", "c"]})).await;
    app.space_as(&key, "c", json!({"tags": ["c"]})).await;
    app.space_as(&key, "none", json!({})).await;

    let default = list(&app, &key, json!({"filter": {"tags": ["a", "c"]}})).await;
    let any = list(
        &app,
        &key,
        json!({"filter": {"tags": ["a", "b"], "tagsMatch": "ANY"}}),
    )
    .await;
    let all = list(
        &app,
        &key,
        json!({"filter": {"tags": ["a", "b"], "tagsMatch": "ALL"}}),
    )
    .await;
    let all_bc = list(
        &app,
        &key,
        json!({"filter": {"tags": ["b", "c"], "tagsMatch": "ALL"}}),
    )
    .await;
    let all_none = list(
        &app,
        &key,
        json!({"filter": {"tags": ["a", "c"], "tagsMatch": "ALL"}}),
    )
    .await;

    assert_eq!(sorted_names(&default), ["ab", "bc", "c"]);
    assert_eq!(total(&default), 3);
    assert_eq!(sorted_names(&any), ["ab", "bc"]);
    assert_eq!(sorted_names(&all), ["ab"]);
    assert_eq!(total(&all), 1);
    assert_eq!(sorted_names(&all_bc), ["bc"]);
    assert_eq!(total(&all_none), 0);
}

#[tokio::test]
async fn only_admins_may_filter_by_another_owner() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let admin_id = viewer_id(&app, &admin).await;
    let (user_id, user) = app.user("lister", false).await;
    app.space_as(&admin, "admin's", json!({})).await;
    app.space_as(&user, "u1", json!({})).await;
    app.space_as(&user, "u2", json!({})).await;

    let admin_lists_user = list(&app, &admin, json!({"filter": {"ownerId": user_id}})).await;
    let admin_lists_self = list(&app, &admin, json!({"filter": {"ownerId": admin_id}})).await;
    let user_lists_self = list(&app, &user, json!({"filter": {"ownerId": user_id}})).await;
    let user_lists_admin = list(&app, &user, json!({"filter": {"ownerId": admin_id}})).await;

    assert_eq!(sorted_names(&admin_lists_user), ["u1", "u2"]);
    assert_eq!(total(&admin_lists_user), 2);
    assert_eq!(sorted_names(&admin_lists_self), ["admin's"]);
    assert_eq!(sorted_names(&user_lists_self), ["u1", "u2"]);
    assert_eq!(user_lists_admin.code(), "FORBIDDEN");
}

// ---------------------------------------------------------------------------------------------
// updateSpace

#[tokio::test]
async fn an_update_changes_the_given_fields_and_leaves_omitted_ones_alone() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let created = create(
        &app,
        &key,
        json!({
            "name": "Before",
            "description": "first",
            "labels": [{"key": "team", "value": "ml"}],
            "tags": ["x"],
        }),
    )
    .await;
    let original = created.data()["createSpace"].clone();
    let id = original["id"].as_str().unwrap().to_string();

    let renamed = update(&app, &key, &id, json!({"name": "  After  "})).await;
    let described = update(&app, &key, &id, json!({"description": "second"})).await;
    let cleared = update(&app, &key, &id, json!({"description": null})).await;
    let relabelled = update(
        &app,
        &key,
        &id,
        json!({"labels": [{"key": "env", "value": "prod"}], "tags": ["y", "z"]}),
    )
    .await;
    let opened = update(&app, &key, &id, json!({"accessMode": "PUBLIC"})).await;
    let nothing = update(&app, &key, &id, json!({})).await;

    let r = &renamed.data()["updateSpace"];
    assert_eq!(r["name"], "After");
    assert_eq!(r["description"], "first");
    assert_eq!(r["labels"], original["labels"]);
    assert_eq!(r["tags"], json!(["x"]));
    assert_eq!(r["accessMode"], "PRIVATE");
    assert_eq!(described.data()["updateSpace"]["description"], "second");
    assert_eq!(described.data()["updateSpace"]["name"], "After");
    assert!(cleared.data()["updateSpace"]["description"].is_null());
    let l = &relabelled.data()["updateSpace"];
    assert_eq!(l["labels"], json!([{"key": "env", "value": "prod"}]));
    assert_eq!(l["tags"], json!(["y", "z"]));
    assert!(
        l["description"].is_null(),
        "omitted description stays cleared"
    );
    let o = &opened.data()["updateSpace"];
    assert_eq!(o["accessMode"], "PUBLIC");
    assert_eq!(o["labels"], l["labels"]);
    assert_eq!(o["tags"], l["tags"]);
    let n = &nothing.data()["updateSpace"];
    assert_eq!(n["name"], "After");
    assert_eq!(n["accessMode"], "PUBLIC");
    assert_eq!(n["embedder"], original["embedder"]);
    assert_eq!(n["chunking"], original["chunking"]);
    assert_eq!(n["owner"], original["owner"]);
    let stored = get(&app, &key, &id).await;
    assert_eq!(stored.data()["space"], *n);
}

#[tokio::test]
async fn owner_embedder_and_chunking_cannot_be_changed() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let (other_id, _) = app.user("someone", false).await;
    let id = app.space_as(&key, "Fixed", json!({})).await;

    let owner = update(&app, &key, &id, json!({"ownerId": other_id})).await;
    let embedder = update(&app, &key, &id, json!({"embedder": "some-other-embedder"})).await;
    let chunking = update(
        &app,
        &key,
        &id,
        json!({"chunking": {"chunkSize": 400, "chunkOverlap": 100}}),
    )
    .await;
    let mixed = update(
        &app,
        &key,
        &id,
        json!({"name": "Renamed", "ownerId": other_id}),
    )
    .await;

    assert_eq!(owner.code(), "VALIDATION_ERROR");
    assert_eq!(owner.field(), "ownerId");
    assert_eq!(embedder.code(), "VALIDATION_ERROR");
    assert_eq!(embedder.field(), "embedder");
    assert_eq!(chunking.code(), "VALIDATION_ERROR");
    assert_eq!(chunking.field(), "chunking");
    assert_eq!(mixed.code(), "VALIDATION_ERROR");
    assert_eq!(
        get(&app, &key, &id).await.data()["space"]["name"],
        "Fixed",
        "a refused update changes nothing"
    );
}

#[tokio::test]
async fn sending_the_current_values_again_is_accepted_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let created = create(
        &app,
        &key,
        json!({
            "name": "Same",
            "description": "d",
            "labels": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}],
            "tags": ["p", "q"],
            "accessMode": "ORGANIZATION",
        }),
    )
    .await;
    let original = created.data()["createSpace"].clone();
    let id = original["id"].as_str().unwrap().to_string();
    let same = json!({
        "name": "Same",
        "description": "d",
        "labels": [{"key": "b", "value": "2"}, {"key": "a", "value": "1"}],
        "tags": ["q", "p"],
        "accessMode": "ORGANIZATION",
        "ownerId": original["owner"]["id"],
        "embedder": "builtin-hash-384",
        "chunking": {"chunkSize": 800, "chunkOverlap": 100},
    });

    let first = update(&app, &key, &id, same.clone()).await;
    let second = update(&app, &key, &id, same).await;

    assert_eq!(first.data()["updateSpace"], original);
    assert_eq!(second.data()["updateSpace"], original);
}

#[tokio::test]
async fn renaming_onto_an_existing_name_of_the_owner_already_exists() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    app.space_as(&key, "Taken", json!({})).await;
    let id = app.space_as(&key, "Free", json!({})).await;

    let clash = update(&app, &key, &id, json!({"name": "Taken"})).await;
    let blank = update(&app, &key, &id, json!({"name": "  "})).await;
    let long = update(&app, &key, &id, json!({"description": "d".repeat(501)})).await;

    assert_eq!(clash.code(), "ALREADY_EXISTS");
    assert_eq!(blank.code(), "VALIDATION_ERROR");
    assert_eq!(blank.field(), "name");
    assert_eq!(long.field(), "description");
    assert_eq!(get(&app, &key, &id).await.data()["space"]["name"], "Free");
}

// ---------------------------------------------------------------------------------------------
// Soft delete, restore, purge

#[tokio::test]
async fn a_soft_deleted_space_is_hidden_until_restored_and_gone_once_purged() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let id = app.space_as(&key, "Doomed", json!({})).await;
    app.space_as(&key, "Survivor", json!({})).await;

    let deleted = op(&app, &key, DELETE, &id).await;
    let hidden = list(&app, &key, json!({})).await;
    let shown = list(&app, &key, json!({"filter": {"includeDeleted": true}})).await;
    let restored = op(&app, &key, RESTORE, &id).await;
    let back = list(&app, &key, json!({})).await;
    op(&app, &key, DELETE, &id).await.data();
    let purged = op(&app, &key, PURGE, &id).await;
    let after_purge = get(&app, &key, &id).await;
    let listed_after_purge = list(&app, &key, json!({"filter": {"includeDeleted": true}})).await;

    assert!(deleted.data()["deleteSpace"]["deletedAt"].is_string());
    assert_eq!(names(&hidden), ["Survivor"]);
    assert_eq!(total(&hidden), 1);
    assert_eq!(sorted_names(&shown), ["Doomed", "Survivor"]);
    assert_eq!(total(&shown), 2);
    let doomed = edges(&shown)
        .into_iter()
        .find(|e| e["node"]["id"] == id.as_str())
        .unwrap();
    assert!(doomed["node"]["deletedAt"].is_string());
    assert!(restored.data()["restoreSpace"]["deletedAt"].is_null());
    assert_eq!(sorted_names(&back), ["Doomed", "Survivor"]);
    assert_eq!(purged.data()["purgeSpace"], id.as_str());
    assert_eq!(after_purge.code(), "NOT_FOUND");
    assert_eq!(names(&listed_after_purge), ["Survivor"]);
}

#[tokio::test]
async fn a_deleted_name_can_be_reused_and_the_old_space_then_cannot_be_restored() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let old = app.space_as(&key, "Reused", json!({})).await;
    op(&app, &key, DELETE, &old).await.data();

    let new = create(&app, &key, json!({"name": "Reused"})).await;
    let restore_old = op(&app, &key, RESTORE, &old).await;

    assert_eq!(new.data()["createSpace"]["name"], "Reused");
    assert_eq!(restore_old.code(), "ALREADY_EXISTS");
}

// ---------------------------------------------------------------------------------------------
// Owner-only operations

#[tokio::test]
async fn owner_only_operations_by_a_colleague_are_owner_only_on_visible_and_not_found_on_private_spaces(
) {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner", false).await;
    let (_, colleague) = app.user("colleague", false).await;
    let shared = app
        .space_as(&owner, "Shared", json!({"accessMode": "ORGANIZATION"}))
        .await;
    let private = app.space_as(&owner, "Private", json!({})).await;

    for (space, expected) in [(&shared, "OWNER_ONLY"), (&private, "NOT_FOUND")] {
        let updated = update(&app, &colleague, space, json!({"name": "Hijacked"})).await;
        let deleted = op(&app, &colleague, DELETE, space).await;
        let restored = op(&app, &colleague, RESTORE, space).await;
        let purged = op(&app, &colleague, PURGE, space).await;

        assert_eq!(updated.code(), expected, "update: {}", updated.body);
        assert_eq!(deleted.code(), expected, "delete");
        assert_eq!(restored.code(), expected, "restore");
        assert_eq!(purged.code(), expected, "purge");
        let untouched = get(&app, &owner, space).await;
        assert_ne!(untouched.data()["space"]["name"], "Hijacked");
        assert!(untouched.data()["space"]["deletedAt"].is_null());
    }
}

#[tokio::test]
async fn an_org_admin_may_update_delete_restore_and_purge_a_users_private_space() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (_, owner) = app.user("owner", false).await;
    let id = app.space_as(&owner, "Theirs", json!({})).await;

    let seen = get(&app, &admin, &id).await;
    let updated = update(&app, &admin, &id, json!({"description": "by admin"})).await;
    let deleted = op(&app, &admin, DELETE, &id).await;
    let restored = op(&app, &admin, RESTORE, &id).await;
    let purged = op(&app, &admin, PURGE, &id).await;

    assert_eq!(seen.data()["space"]["viewerPermission"], "OWNER");
    assert_eq!(updated.data()["updateSpace"]["description"], "by admin");
    assert!(deleted.data()["deleteSpace"]["deletedAt"].is_string());
    assert!(restored.data()["restoreSpace"]["deletedAt"].is_null());
    assert_eq!(purged.data()["purgeSpace"], id.as_str());
    assert_eq!(get(&app, &owner, &id).await.code(), "NOT_FOUND");
}

// ---------------------------------------------------------------------------------------------
// Visibility

#[tokio::test]
async fn a_private_space_is_invisible_to_everyone_but_its_owner_and_the_org_admin() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner", false).await;
    let (_, colleague) = app.user("colleague", false).await;
    let owner_id = viewer_id(&app, &owner).await;
    let acme = app.other_org("acme").await;
    let (_, acme_user) = app.user_in(&acme, "stranger", false).await;
    let id = app.space_as(&owner, "Secret", json!({})).await;

    let by_owner = get(&app, &owner, &id).await;
    let by_admin = get(&app, &app.admin_key, &id).await;
    let by_colleague = get(&app, &colleague, &id).await;
    let by_stranger = get(&app, &acme_user, &id).await;
    let by_other_admin = get(&app, &acme, &id).await;
    let colleague_list = list(&app, &colleague, json!({})).await;
    let other_admin_list = list(&app, &acme, json!({})).await;
    let other_admin_by_owner = list(&app, &acme, json!({"filter": {"ownerId": owner_id}})).await;

    assert_eq!(by_owner.data()["space"]["viewerPermission"], "OWNER");
    assert_eq!(by_admin.data()["space"]["viewerPermission"], "OWNER");
    assert_eq!(by_colleague.code(), "NOT_FOUND");
    assert_eq!(by_stranger.code(), "NOT_FOUND");
    assert_eq!(by_other_admin.code(), "NOT_FOUND");
    assert!(!ids(&colleague_list).contains(&id));
    assert_eq!(total(&colleague_list), 0);
    assert_eq!(total(&other_admin_list), 0);
    assert_eq!(total(&other_admin_by_owner), 0);
}

#[tokio::test]
async fn an_organization_space_is_visible_to_colleagues_but_not_to_other_organizations() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner", false).await;
    let (_, colleague) = app.user("colleague", false).await;
    let acme = app.other_org("acme").await;
    let (_, acme_user) = app.user_in(&acme, "stranger", false).await;
    let id = app
        .space_as(&owner, "Team", json!({"accessMode": "ORGANIZATION"}))
        .await;
    app.space_as(&owner, "Mine only", json!({})).await;

    let by_colleague = get(&app, &colleague, &id).await;
    let colleague_list = list(&app, &colleague, json!({})).await;
    let by_stranger = get(&app, &acme_user, &id).await;
    let stranger_list = list(&app, &acme_user, json!({})).await;
    let by_other_admin = get(&app, &acme, &id).await;

    assert_eq!(by_colleague.data()["space"]["viewerPermission"], "VIEW");
    assert_eq!(ids(&colleague_list), [id.as_str()]);
    assert_eq!(total(&colleague_list), 1);
    assert_eq!(
        edges(&colleague_list)[0]["node"]["viewerPermission"],
        "VIEW"
    );
    assert_eq!(by_stranger.code(), "NOT_FOUND");
    assert_eq!(total(&stranger_list), 0);
    assert_eq!(by_other_admin.code(), "NOT_FOUND");
}

#[tokio::test]
async fn a_public_space_is_visible_to_other_organizations_with_view_permission() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner", false).await;
    let acme = app.other_org("acme").await;
    let (_, acme_user) = app.user_in(&acme, "stranger", false).await;
    let id = app
        .space_as(&owner, "Open", json!({"accessMode": "PUBLIC"}))
        .await;
    app.space_as(&owner, "Closed", json!({})).await;

    let by_stranger = get(&app, &acme_user, &id).await;
    let stranger_list = list(&app, &acme_user, json!({})).await;
    let by_other_admin = get(&app, &acme, &id).await;
    let stranger_update = update(&app, &acme_user, &id, json!({"name": "Mine now"})).await;
    let other_admin_delete = op(&app, &acme, DELETE, &id).await;

    let s = &by_stranger.data()["space"];
    assert_eq!(s["viewerPermission"], "VIEW");
    assert_eq!(s["organization"]["handle"], "default");
    assert_eq!(ids(&stranger_list), [id.as_str()]);
    assert_eq!(total(&stranger_list), 1);
    assert_eq!(by_other_admin.data()["space"]["viewerPermission"], "VIEW");
    assert_eq!(stranger_update.code(), "OWNER_ONLY");
    assert_eq!(other_admin_delete.code(), "OWNER_ONLY");
}

// ---------------------------------------------------------------------------------------------
// Statement counts

const PAGE_WITH_RELATIONS: &str = "{ spaces(first: 100){ edges{ node{ id owner{ __typename } \
    labels{ key } tags organization{ handle } } } } }";

/// Creates `n` spaces spread over the admin, a user and an agent, each with labels and tags.
async fn seed_owned_spaces(app: &TestApp, from: usize, n: usize, owners: &[String]) {
    join_all((from..from + n).map(|i| {
        let owner = &owners[i % owners.len()];
        let name = format!("space {i}");
        let input = json!({
            "ownerId": owner,
            "labels": [{"key": "n", "value": i.to_string()}],
            "tags": [format!("t{i}"), "common"],
        });
        async move { app.space_as(&app.admin_key, &name, input).await }
    }))
    .await;
}

#[tokio::test]
async fn a_page_of_spaces_with_owners_labels_tags_and_organization_costs_the_same_statements_for_5_or_40_spaces(
) {
    let app = TestApp::spawn().await;
    let admin_id = viewer_id(&app, &app.admin_key).await;
    let (user_id, _) = app.user("owner", false).await;
    let (agent_id, _) = app.agent("owner-bot").await;
    let owners = [admin_id, user_id, agent_id];
    seed_owned_spaces(&app, 0, 5, &owners).await;

    app.warm(&app.admin_key).await;
    let before_5 = app.statements();
    let page_5 = app.gql(PAGE_WITH_RELATIONS, json!({})).await;
    let cost_5 = app.statements() - before_5;
    seed_owned_spaces(&app, 5, 35, &owners).await;
    app.warm(&app.admin_key).await;
    let before_40 = app.statements();
    let page_40 = app.gql(PAGE_WITH_RELATIONS, json!({})).await;
    let cost_40 = app.statements() - before_40;

    assert_eq!(
        page_5.data()["spaces"]["edges"].as_array().unwrap().len(),
        5
    );
    assert_eq!(
        page_40.data()["spaces"]["edges"].as_array().unwrap().len(),
        40
    );
    let typenames: HashSet<&str> = page_40.data()["spaces"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["owner"]["__typename"].as_str().unwrap())
        .collect();
    assert_eq!(typenames, HashSet::from(["User", "Agent"]));
    assert_eq!(
        cost_5, cost_40,
        "statements for 5 spaces: {cost_5}, for 40: {cost_40} (N+1)"
    );
}

/// The benchmark's query: the page and every space's memory count come from one statement
/// (the counters and the expired-memory correction are columns of the list itself).
#[tokio::test]
async fn a_page_of_spaces_with_memory_counts_and_storage_is_one_statement() {
    let app = TestApp::spawn().await;
    let contents = |n: usize| (0..n).map(|i| format!("memory {i}")).collect::<Vec<_>>();
    let mut expected = HashMap::new();
    for (name, n) in [("none", 0), ("two", 2), ("five", 5)] {
        let id = app.space_as(&app.admin_key, name, json!({})).await;
        if n > 0 {
            app.memories_as(&app.admin_key, &id, &contents(n)).await;
        }
        let bytes: usize = contents(n).iter().map(|c| c.len()).sum();
        expected.insert(name, (n as i64, bytes as i64));
    }

    app.warm(&app.admin_key).await;
    // Both fields, each alone (a page without `usedStorage` skips reading the bytes), and the
    // same page again.
    for fields in [
        "memoryCount usedStorage",
        "memoryCount",
        "usedStorage",
        "usedStorage memoryCount",
    ] {
        // Quiet, and the principal cached again (on a shared PostgreSQL database another
        // test's access events can invalidate it, and re-authenticating is a statement).
        app.settle().await;
        app.warm(&app.admin_key).await;
        let before = app.statements();
        let page = app
            .gql(
                &format!("{{ spaces(first: 50) {{ edges {{ node {{ name {fields} }} }} }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(
            app.statements() - before,
            1,
            "{fields}: the spaces and their counts in one statement"
        );
        for edge in page.data()["spaces"]["edges"].as_array().unwrap() {
            let node = &edge["node"];
            let (count, bytes) = expected[node["name"].as_str().unwrap()];
            if fields.contains("memoryCount") {
                assert_eq!(
                    node["memoryCount"].as_i64(),
                    Some(count),
                    "{fields}: {node}"
                );
            }
            if fields.contains("usedStorage") {
                assert_eq!(
                    node["usedStorage"].as_i64(),
                    Some(bytes),
                    "{fields}: {node}"
                );
            }
        }
        assert_eq!(
            page.data()["spaces"]["edges"].as_array().unwrap().len(),
            expected.len()
        );
    }
}
