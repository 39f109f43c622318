//! Memories: the write path (validation, batches, threads), reads and pagination, filters,
//! updates and deletes as search sees them, who may write, expiry, and the SQL statements a page
//! with counts and relations costs.
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};

macro_rules! memory_fields {
    () => {
        "id content tags metadata importance confidence recallCount threadId createdAt updatedAt \
         expiresAt space{ id } agent{ id } author{ __typename ... on User{ id } ... on Agent{ id } }"
    };
}

const CREATE: &str = concat!(
    "mutation($i:CreateMemoryInput!){ createMemory(input:$i){ ",
    memory_fields!(),
    " } }"
);
const GET: &str = concat!("query($id:ID!){ memory(id:$id){ ", memory_fields!(), " } }");
const UPDATE: &str = concat!(
    "mutation($id:ID!,$i:UpdateMemoryInput!){ updateMemory(id:$id,input:$i){ ",
    memory_fields!(),
    " } }"
);
const DELETE: &str = "mutation($id:ID!){ deleteMemory(id:$id) }";
const BATCH: &str = "mutation($s:ID!,$i:[MemoryInput!]!){ createMemories(spaceId:$s,inputs:$i){ \
    id content createdAt } }";
const THREAD: &str = "mutation($s:ID!,$t:String!,$m:[ThreadMessageInput!]!){ \
    addThreadMessages(spaceId:$s,threadId:$t,messages:$m){ id content threadId metadata } }";
const LIST: &str = "query($s:ID!,$first:Int,$after:String,$f:MemoryFilterInput,\
    $o:OrderDirection! = DESC){ space(id:$s){ memoryCount usedStorage \
      memories(first:$first,after:$after,filter:$f,order:$o){ totalCount \
        pageInfo{ hasNextPage hasPreviousPage startCursor endCursor } \
        edges{ cursor node{ id content createdAt } } } } }";
const STATS: &str = "query($s:ID!){ space(id:$s){ memoryCount usedStorage lastActivityAt } }";

// ---------------------------------------------------------------------------------------------
// Helpers

async fn viewer_id(app: &TestApp, key: &str) -> String {
    let r = app
        .gql_as(
            Some(key),
            "{ viewer{ principal{ ... on User{ id } ... on Agent{ id } } } }",
            json!({}),
        )
        .await;
    r.data()["viewer"]["principal"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn space(app: &TestApp, name: &str) -> String {
    app.space_as(&app.admin_key, name, json!({})).await
}

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

async fn delete(app: &TestApp, key: &str, id: &str) -> GqlResponse {
    app.gql_as(Some(key), DELETE, json!({ "id": id })).await
}

async fn batch(app: &TestApp, key: &str, space_id: &str, inputs: Value) -> GqlResponse {
    app.gql_as(Some(key), BATCH, json!({ "s": space_id, "i": inputs }))
        .await
}

async fn thread(app: &TestApp, space_id: &str, thread_id: &str, messages: Value) -> GqlResponse {
    app.gql(
        THREAD,
        json!({ "s": space_id, "t": thread_id, "m": messages }),
    )
    .await
}

/// `space(id){ memories(…) }` as `key`.
async fn list(
    app: &TestApp,
    key: &str,
    space_id: &str,
    first: Option<i64>,
    after: Option<&str>,
    filter: Value,
    order: &str,
) -> GqlResponse {
    app.gql_as(
        Some(key),
        LIST,
        json!({ "s": space_id, "first": first, "after": after, "f": filter, "o": order }),
    )
    .await
}

fn list_ids(r: &GqlResponse) -> Vec<String> {
    r.data()["space"]["memories"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn list_total(r: &GqlResponse) -> i64 {
    r.data()["space"]["memories"]["totalCount"]
        .as_i64()
        .unwrap()
}

/// (memoryCount, usedStorage) of a space, as the admin.
async fn stats(app: &TestApp, space_id: &str) -> (i64, i64) {
    let r = app.gql(STATS, json!({ "s": space_id })).await;
    let s = &r.data()["space"];
    (
        s["memoryCount"].as_i64().unwrap(),
        s["usedStorage"].as_i64().unwrap(),
    )
}

/// Memory ids a search of `mode` finds in `space_id`, best first.
async fn search_ids(
    app: &TestApp,
    key: &str,
    space_id: &str,
    query: &str,
    mode: &str,
) -> Vec<String> {
    app.search_as(
        key,
        json!({ "query": query, "spaceIds": [space_id], "mode": mode, "limit": 100 }),
    )
    .await
    .hit_ids()
}

fn set(ids: &[&String]) -> HashSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

// ---------------------------------------------------------------------------------------------
// Create, read, update, delete

#[tokio::test]
async fn a_memory_round_trips_through_create_read_update_and_delete() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "home").await;
    let admin = viewer_id(&app, &app.admin_key).await;
    let (agent_id, _) = app.agent("helper").await;
    let expires = (Utc::now() + chrono::Duration::days(30)).trunc_subsecs(0);

    let created = create(
        &app,
        &app.admin_key,
        json!({
            "spaceId": space_id, "content": "The boiler is serviced every October",
            "tags": ["home", "boiler"], "metadata": { "source": "manual", "n": 3 },
            "importance": 8, "confidence": 0.75, "agentId": agent_id, "threadId": "t-1",
            "expiresAt": expires.to_rfc3339(),
        }),
    )
    .await;
    let m = created.data()["createMemory"].clone();
    let id = m["id"].as_str().unwrap().to_string();
    let read = get(&app, &app.admin_key, &id).await;

    assert_eq!(read.data()["memory"], m);
    assert_eq!(m["content"], "The boiler is serviced every October");
    assert_eq!(m["tags"], json!(["boiler", "home"]));
    assert_eq!(m["metadata"], json!({ "source": "manual", "n": 3 }));
    assert_eq!(m["importance"], 8);
    assert_eq!(m["confidence"], 0.75);
    assert_eq!(m["recallCount"], 0);
    assert_eq!(m["threadId"], "t-1");
    assert_eq!(m["space"]["id"], space_id.as_str());
    assert_eq!(m["agent"]["id"], agent_id.as_str());
    assert_eq!(m["author"], json!({ "__typename": "User", "id": admin }));
    assert_eq!(time(&m["expiresAt"]), expires);
    assert_eq!(m["createdAt"], m["updatedAt"]);

    let updated = update(
        &app,
        &app.admin_key,
        &id,
        json!({ "content": "The boiler is serviced every November", "tags": ["home"],
                "metadata": null, "importance": 2, "threadId": null }),
    )
    .await;
    let u = updated.data()["updateMemory"].clone();
    let reread = get(&app, &app.admin_key, &id).await;

    assert_eq!(reread.data()["memory"], u);
    assert_eq!(u["content"], "The boiler is serviced every November");
    assert_eq!(u["tags"], json!(["home"]));
    assert_eq!(u["metadata"], Value::Null);
    assert_eq!(u["importance"], 2);
    assert_eq!(u["threadId"], Value::Null);
    assert_eq!(u["confidence"], 0.75, "an omitted field is unchanged");
    assert_eq!(u["agent"]["id"], agent_id.as_str());
    assert_eq!(time(&u["expiresAt"]), expires);
    assert_eq!(u["createdAt"], m["createdAt"]);
    assert!(time(&u["updatedAt"]) > time(&m["updatedAt"]));

    let deleted = delete(&app, &app.admin_key, &id).await;
    assert_eq!(deleted.data()["deleteMemory"], id.as_str());
    assert_eq!(get(&app, &app.admin_key, &id).await.code(), "NOT_FOUND");
    assert_eq!(delete(&app, &app.admin_key, &id).await.code(), "NOT_FOUND");
    assert_eq!(
        update(&app, &app.admin_key, &id, json!({ "importance": 3 }))
            .await
            .code(),
        "NOT_FOUND"
    );
    assert_eq!(stats(&app, &space_id).await, (0, 0));
}

#[tokio::test]
async fn a_memory_written_with_only_content_gets_the_defaults() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "defaults").await;

    let r = create(
        &app,
        &app.admin_key,
        json!({ "spaceId": space_id, "content": "Just a note" }),
    )
    .await;

    let m = &r.data()["createMemory"];
    assert_eq!(m["importance"], 5);
    assert_eq!(m["confidence"], 1.0);
    assert_eq!(m["tags"], json!([]));
    assert_eq!(m["metadata"], Value::Null);
    assert_eq!(m["threadId"], Value::Null);
    assert_eq!(m["expiresAt"], Value::Null);
    assert_eq!(m["agent"], Value::Null);
    assert_eq!(m["recallCount"], 0);
}

#[tokio::test]
async fn a_memory_of_a_space_the_caller_cannot_read_is_not_found() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "private").await;
    let id = app
        .memory_as(&app.admin_key, &space_id, "A private thought", json!({}))
        .await;
    let (_, stranger) = app.user("stranger", false).await;
    let other_admin = app.other_org("acme").await;

    for key in [&stranger, &other_admin] {
        assert_eq!(get(&app, key, &id).await.code(), "NOT_FOUND");
        assert_eq!(
            update(&app, key, &id, json!({ "content": "mine now" }))
                .await
                .code(),
            "NOT_FOUND"
        );
        assert_eq!(delete(&app, key, &id).await.code(), "NOT_FOUND");
        assert_eq!(
            create(&app, key, json!({ "spaceId": space_id, "content": "x" }))
                .await
                .code(),
            "NOT_FOUND"
        );
    }
    let missing = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        get(&app, &app.admin_key, &missing).await.code(),
        "NOT_FOUND"
    );
    assert_eq!(
        get(&app, &app.admin_key, "nonsense").await.code(),
        "NOT_FOUND"
    );
    assert_eq!(
        create(
            &app,
            &app.admin_key,
            json!({ "spaceId": missing, "content": "x" })
        )
        .await
        .code(),
        "NOT_FOUND"
    );
    assert_eq!(stats(&app, &space_id).await.0, 1);
}

// ---------------------------------------------------------------------------------------------
// Validation

#[tokio::test]
async fn each_invalid_memory_field_is_rejected_with_its_field_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "strict").await;
    let other_admin = app.other_org("acme").await;
    let foreign_agent = app
        .gql_as(
            Some(&other_admin),
            "mutation{ createAgent(input:{handle:\"theirs\",name:\"theirs\"}){ id } }",
            json!({}),
        )
        .await
        .data()["createAgent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let past = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let many_tags: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("empty content", json!({ "content": "" }), "content"),
        ("blank content", json!({ "content": " \n\t " }), "content"),
        (
            "content of 32,769 chars",
            json!({ "content": "a".repeat(32_769) }),
            "content",
        ),
        ("importance 0", json!({ "importance": 0 }), "importance"),
        ("importance 11", json!({ "importance": 11 }), "importance"),
        (
            "confidence below 0",
            json!({ "confidence": -0.01 }),
            "confidence",
        ),
        (
            "confidence above 1",
            json!({ "confidence": 1.01 }),
            "confidence",
        ),
        ("51 tags", json!({ "tags": many_tags }), "tags"),
        ("a blank tag", json!({ "tags": ["ok", "  "] }), "tags"),
        (
            "a tag of 65 chars",
            json!({ "tags": ["x".repeat(65)] }),
            "tags",
        ),
        ("metadata array", json!({ "metadata": [1, 2] }), "metadata"),
        (
            "metadata string",
            json!({ "metadata": "hello" }),
            "metadata",
        ),
        ("metadata number", json!({ "metadata": 7 }), "metadata"),
        (
            "metadata over 16 KiB",
            json!({ "metadata": { "k": "x".repeat(16 * 1024) } }),
            "metadata",
        ),
        (
            "expiresAt in the past",
            json!({ "expiresAt": past }),
            "expiresAt",
        ),
        (
            "agentId of no agent",
            json!({ "agentId": uuid::Uuid::now_v7().to_string() }),
            "agentId",
        ),
        (
            "agentId of another organization's agent",
            json!({ "agentId": foreign_agent }),
            "agentId",
        ),
        (
            "malformed agentId",
            json!({ "agentId": "not-an-id" }),
            "agentId",
        ),
    ];

    let mut failures = Vec::new();
    for (name, patch, field) in &cases {
        let r = app
            .create_memory_as(&app.admin_key, &space_id, "valid content", patch.clone())
            .await;
        let code = r.codes();
        let got_field = r.error()["extensions"]["field"].as_str().unwrap_or("");
        // A tag error may name the tag's position (`tags[1]`).
        if code != ["VALIDATION_ERROR"] || !got_field.starts_with(field) {
            failures.push(format!(
                "{name}: expected VALIDATION_ERROR on {field}, got {}",
                r.body
            ));
        }
    }

    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(stats(&app, &space_id).await, (0, 0));
}

#[tokio::test]
async fn values_at_the_limits_are_accepted_and_storage_counts_bytes() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "limits").await;
    let fifty_tags: Vec<String> = (0..50).map(|i| format!("tag{i}")).collect();
    // 32,768 characters of two bytes each: the limit is in characters.
    let longest = "é".repeat(32_768);

    let cases = [
        json!({ "content": longest }),
        json!({ "content": "x", "tags": fifty_tags }),
        json!({ "content": "x", "tags": ["y".repeat(64)] }),
        json!({ "content": "x", "importance": 1, "confidence": 0.0 }),
        json!({ "content": "x", "importance": 10, "confidence": 1.0 }),
        json!({ "content": "x", "metadata": { "k": "z".repeat(16 * 1024 - 16) } }),
        json!({ "content": "x", "metadata": {} }),
    ];
    for input in &cases {
        let mut input = input.clone();
        input["spaceId"] = json!(space_id);
        create(&app, &app.admin_key, input).await.data();
    }

    let (count, bytes) = stats(&app, &space_id).await;
    assert_eq!(count, cases.len() as i64);
    assert_eq!(bytes, 2 * 32_768 + (cases.len() as i64 - 1));
}

#[tokio::test]
async fn invalid_updates_are_rejected_with_their_field_and_change_nothing() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "updates").await;
    let before = create(
        &app,
        &app.admin_key,
        json!({ "spaceId": space_id, "content": "Original words", "tags": ["a"] }),
    )
    .await
    .data()["createMemory"]
        .clone();
    let id = before["id"].as_str().unwrap();
    let past = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "content": "   " }), "content"),
        (json!({ "content": "b".repeat(32_769) }), "content"),
        (json!({ "importance": 0 }), "importance"),
        (json!({ "confidence": 2.0 }), "confidence"),
        (json!({ "metadata": [1] }), "metadata"),
        (
            json!({ "tags": vec!["t"; 51].iter().enumerate().map(|(i, t)| format!("{t}{i}")).collect::<Vec<_>>() }),
            "tags",
        ),
        (json!({ "expiresAt": past }), "expiresAt"),
    ];

    let mut failures = Vec::new();
    for (input, field) in &cases {
        let r = update(&app, &app.admin_key, id, input.clone()).await;
        let got_field = r.error()["extensions"]["field"].as_str().unwrap_or("");
        if r.codes() != ["VALIDATION_ERROR"] || !got_field.starts_with(field) {
            failures.push(format!(
                "{input}: expected VALIDATION_ERROR on {field}, got {}",
                r.body
            ));
        }
    }

    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(get(&app, &app.admin_key, id).await.data()["memory"], before);
}

// ---------------------------------------------------------------------------------------------
// Batches and threads

#[tokio::test]
async fn a_batch_of_five_with_an_invalid_fourth_item_stores_nothing_and_reports_index_3() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "batch").await;
    let bad_items = [
        (json!({ "content": "  " }), "content"),
        (json!({ "content": "ok", "importance": 11 }), "importance"),
        (
            json!({ "content": "ok", "metadata": ["not", "an", "object"] }),
            "metadata",
        ),
        (
            json!({ "content": "ok", "agentId": uuid::Uuid::now_v7().to_string() }),
            "agentId",
        ),
        (json!({ "content": "ok", "tags": [""] }), "tags"),
    ];

    let mut failures = Vec::new();
    for (bad, field) in &bad_items {
        let mut inputs: Vec<Value> = (0..5)
            .map(|i| json!({ "content": format!("Batch item {i} about zeppelins"), "tags": ["batch"] }))
            .collect();
        inputs[3] = bad.clone();
        let r = batch(&app, &app.admin_key, &space_id, json!(inputs)).await;
        let ext = &r.error()["extensions"];
        let ok = r.codes() == ["VALIDATION_ERROR"]
            && ext["index"] == 3
            && ext["field"].as_str().unwrap_or("").starts_with(field);
        if !ok {
            failures.push(format!("item 3 = {bad}: got {}", r.body));
        }
    }

    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(stats(&app, &space_id).await, (0, 0));
    let listed = list(
        &app,
        &app.admin_key,
        &space_id,
        None,
        None,
        json!(null),
        "DESC",
    )
    .await;
    assert_eq!(list_total(&listed), 0);
    for mode in ["KEYWORD", "SEMANTIC", "HYBRID"] {
        assert!(
            search_ids(
                &app,
                &app.admin_key,
                &space_id,
                "zeppelins batch item",
                mode
            )
            .await
            .is_empty(),
            "{mode} search found a memory of a rejected batch"
        );
    }
}

#[tokio::test]
async fn a_batch_with_several_bad_items_reports_the_first_one() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "batch").await;
    let unknown_agent = uuid::Uuid::now_v7().to_string();
    let cases = [
        (json!({ "content": "ok", "importance": 0 }), "importance"),
        (
            json!({ "content": "ok", "agentId": unknown_agent }),
            "agentId",
        ),
    ];

    let mut failures = Vec::new();
    for (bad, field) in &cases {
        let mut inputs: Vec<Value> = (0..5)
            .map(|i| json!({ "content": format!("item {i}") }))
            .collect();
        inputs[1] = bad.clone();
        inputs[3] = json!({ "content": "" });
        let r = batch(&app, &app.admin_key, &space_id, json!(inputs)).await;
        let ext = &r.error()["extensions"];
        if r.codes() != ["VALIDATION_ERROR"] || ext["index"] != 1 || ext["field"] != *field {
            failures.push(format!(
                "item 1 = {bad}, item 3 blank: expected index 1 on {field}, got {}",
                r.body
            ));
        }
    }

    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(stats(&app, &space_id).await, (0, 0));
}

#[tokio::test]
async fn batches_of_0_or_1001_memories_are_rejected_and_1000_are_accepted() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "sizes").await;
    let items = |n: usize| -> Value {
        json!((0..n)
            .map(|i| json!({ "content": format!("memory number {i}") }))
            .collect::<Vec<_>>())
    };

    let none = batch(&app, &app.admin_key, &space_id, items(0)).await;
    let too_many = batch(&app, &app.admin_key, &space_id, items(1001)).await;
    let after_rejects = stats(&app, &space_id).await;
    let most = batch(&app, &app.admin_key, &space_id, items(1000)).await;

    assert_eq!(none.code(), "VALIDATION_ERROR");
    assert_eq!(too_many.code(), "VALIDATION_ERROR");
    assert_eq!(after_rejects, (0, 0));
    let written = most.data()["createMemories"].as_array().unwrap();
    assert_eq!(written.len(), 1000);
    assert_eq!(written[999]["content"], "memory number 999");
    let ids: HashSet<&str> = written.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1000);
    assert_eq!(stats(&app, &space_id).await.0, 1000);
}

#[tokio::test]
async fn thread_messages_are_stored_in_order_with_their_role_and_listed_by_thread() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "chat").await;
    let first = thread(
        &app,
        &space_id,
        "conv-42",
        json!([
            { "role": "user", "content": "Can you book a table for four on Friday?" },
            { "role": "assistant", "content": "Booked at Luigi's for 8pm on Friday." },
            { "role": "user", "content": "Thanks, add a reminder too." },
        ]),
    )
    .await;
    thread(
        &app,
        &space_id,
        "conv-7",
        json!([{ "role": "user", "content": "Unrelated chat" }]),
    )
    .await
    .data();
    let more = thread(
        &app,
        &space_id,
        "conv-42",
        json!([{ "role": "tool", "content": "reminder created for Friday 7pm" }]),
    )
    .await;

    let written = first.data()["addThreadMessages"].as_array().unwrap();
    let roles: Vec<&Value> = written.iter().map(|m| &m["metadata"]["role"]).collect();
    assert_eq!(roles, [&json!("user"), &json!("assistant"), &json!("user")]);
    assert!(written.iter().all(|m| m["threadId"] == "conv-42"));
    assert_eq!(
        written[1]["content"],
        "Booked at Luigi's for 8pm on Friday."
    );
    let mut expected: Vec<String> = written
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    expected.push(
        more.data()["addThreadMessages"][0]["id"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let filter = json!({ "threadId": "conv-42" });
    let asc = list(
        &app,
        &app.admin_key,
        &space_id,
        None,
        None,
        filter.clone(),
        "ASC",
    )
    .await;
    let desc = list(&app, &app.admin_key, &space_id, None, None, filter, "DESC").await;
    assert_eq!(list_ids(&asc), expected);
    assert_eq!(list_total(&asc), 4);
    expected.reverse();
    assert_eq!(list_ids(&desc), expected);
    assert_eq!(stats(&app, &space_id).await.0, 5);
}

#[tokio::test]
async fn a_thread_message_with_a_blank_role_or_content_is_rejected_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "chat").await;

    let blank_role = thread(
        &app,
        &space_id,
        "t",
        json!([{ "role": "user", "content": "hi" }, { "role": " ", "content": "hello" }]),
    )
    .await;
    let blank_content = thread(
        &app,
        &space_id,
        "t",
        json!([{ "role": "user", "content": "hi" }, { "role": "assistant", "content": "" }]),
    )
    .await;

    assert_eq!(blank_role.code(), "VALIDATION_ERROR");
    assert_eq!(blank_role.field(), "role");
    assert_eq!(blank_content.code(), "VALIDATION_ERROR");
    assert_eq!(blank_content.field(), "content");
    assert_eq!(stats(&app, &space_id).await.0, 0);
}

// ---------------------------------------------------------------------------------------------
// Listing

/// Walks `memories(first: 7)` in `order`; returns the ids and the page sizes.
async fn walk(app: &TestApp, space_id: &str, order: &str, total: i64) -> (Vec<String>, Vec<usize>) {
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    let mut after: Option<String> = None;
    for page in 0..20 {
        let r = list(
            app,
            &app.admin_key,
            space_id,
            Some(7),
            after.as_deref(),
            json!(null),
            order,
        )
        .await;
        let conn = &r.data()["space"]["memories"];
        assert_eq!(conn["totalCount"], total, "{order} page {page}");
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], json!(page > 0));
        let page_ids = list_ids(&r);
        sizes.push(page_ids.len());
        ids.extend(page_ids);
        if conn["pageInfo"]["hasNextPage"] != json!(true) {
            return (ids, sizes);
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(String::from);
    }
    panic!("{order}: still hasNextPage after 20 pages");
}

#[tokio::test]
async fn paging_through_30_memories_seven_at_a_time_returns_each_exactly_once_in_both_orders() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "pages").await;
    // Ten one by one, then twenty in one batch (which share a creation time).
    let mut created = Vec::new();
    for i in 0..10 {
        created.push(
            app.memory_as(&app.admin_key, &space_id, &format!("single {i}"), json!({}))
                .await,
        );
    }
    let batch_contents: Vec<String> = (0..20).map(|i| format!("batched {i}")).collect();
    created.extend(
        app.memories_as(&app.admin_key, &space_id, &batch_contents)
            .await,
    );

    let (asc, asc_sizes) = walk(&app, &space_id, "ASC", 30).await;
    let (desc, desc_sizes) = walk(&app, &space_id, "DESC", 30).await;
    let default_order = app
        .gql(
            "query($s:ID!){ space(id:$s){ memories{ edges{ node{ id } } } } }",
            json!({ "s": space_id }),
        )
        .await;

    assert_eq!(asc_sizes, [7, 7, 7, 7, 2]);
    assert_eq!(desc_sizes, [7, 7, 7, 7, 2]);
    assert_eq!(asc, created, "ASC is creation order");
    let mut reversed = created.clone();
    reversed.reverse();
    assert_eq!(desc, reversed, "DESC is the reverse");
    assert_eq!(list_ids(&default_order), reversed, "DESC is the default");
}

#[tokio::test]
async fn a_malformed_memory_cursor_is_an_invalid_argument() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "cursors").await;

    let r = list(
        &app,
        &app.admin_key,
        &space_id,
        Some(5),
        Some("garbage"),
        json!(null),
        "DESC",
    )
    .await;

    assert_eq!(r.code(), "INVALID_ARGUMENT");
}

#[tokio::test]
async fn memory_filters_select_by_any_tag_agent_thread_and_creation_time() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "filters").await;
    let (agent_id, _) = app.agent("scout").await;
    let inputs = [
        json!({ "tags": ["red"] }),
        json!({ "tags": ["blue"] }),
        json!({ "tags": ["red", "green"], "agentId": agent_id }),
        json!({ "threadId": "th-1" }),
        json!({}),
    ];
    let mut ids = Vec::new();
    let mut times = Vec::new();
    for (i, extra) in inputs.iter().enumerate() {
        let mut input = extra.clone();
        input["spaceId"] = json!(space_id);
        input["content"] = json!(format!("memory {i}"));
        let r = create(&app, &app.admin_key, input).await;
        ids.push(r.data()["createMemory"]["id"].as_str().unwrap().to_string());
        times.push(r.data()["createMemory"]["createdAt"].clone());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = |i: usize| &ids[i];
    let cases: Vec<(Value, HashSet<String>)> = vec![
        (json!({ "tags": ["red"] }), set(&[m(0), m(2)])),
        (json!({ "tags": ["red", "blue"] }), set(&[m(0), m(1), m(2)])),
        (json!({ "tags": ["green", "blue"] }), set(&[m(1), m(2)])),
        (json!({ "tags": ["purple"] }), set(&[])),
        (json!({ "agentId": agent_id }), set(&[m(2)])),
        (json!({ "threadId": "th-1" }), set(&[m(3)])),
        (json!({ "threadId": "th-2" }), set(&[])),
        (
            json!({ "createdAfter": times[1] }),
            set(&[m(2), m(3), m(4)]),
        ),
        (json!({ "createdBefore": times[2] }), set(&[m(0), m(1)])),
        (
            json!({ "createdAfter": times[0], "createdBefore": times[3] }),
            set(&[m(1), m(2)]),
        ),
        (
            json!({ "tags": ["red"], "createdAfter": times[0] }),
            set(&[m(2)]),
        ),
        (json!({}), set(&[m(0), m(1), m(2), m(3), m(4)])),
    ];

    let mut failures = Vec::new();
    for (filter, expected) in &cases {
        let r = list(
            &app,
            &app.admin_key,
            &space_id,
            None,
            None,
            filter.clone(),
            "DESC",
        )
        .await;
        let got: HashSet<String> = list_ids(&r).into_iter().collect();
        if &got != expected || list_total(&r) != expected.len() as i64 {
            failures.push(format!(
                "{filter}: listed {got:?} (totalCount {}), expected {expected:?}",
                list_total(&r)
            ));
        }
    }

    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        stats(&app, &space_id).await.0,
        5,
        "filters do not change memoryCount"
    );
}

// ---------------------------------------------------------------------------------------------
// Updates and deletes as lists and search see them

#[tokio::test]
async fn updating_a_memorys_content_makes_search_find_the_new_words_and_not_the_old() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "keys").await;
    let id = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "The spare key is hidden under the flowerpot",
            json!({}),
        )
        .await;
    app.memory_as(
        &app.admin_key,
        &space_id,
        "The garage door code is 4711",
        json!({}),
    )
    .await;
    // Load the vector index before the update, so the update has to refresh it.
    let before = search_ids(&app, &app.admin_key, &space_id, "flowerpot", "SEMANTIC").await;
    let new_content = "The spare key now sits in the lockbox by the garden shed";

    update(&app, &app.admin_key, &id, json!({ "content": new_content }))
        .await
        .data();

    assert_eq!(before.first(), Some(&id));
    assert!(
        search_ids(&app, &app.admin_key, &space_id, "flowerpot", "KEYWORD")
            .await
            .is_empty()
    );
    assert_eq!(
        search_ids(&app, &app.admin_key, &space_id, "lockbox", "KEYWORD").await,
        [id.as_str()]
    );
    for mode in ["SEMANTIC", "HYBRID"] {
        let r = app
            .search_as(
                &app.admin_key,
                json!({ "query": "lockbox garden shed", "spaceIds": [space_id], "mode": mode }),
            )
            .await;
        let hits = r.data()["searchMemories"].as_array().unwrap();
        assert_eq!(hits[0]["memory"]["id"], id.as_str(), "{mode}: {}", r.body);
        assert_eq!(
            hits[0]["chunk"], new_content,
            "{mode}: the chunk is the new text"
        );
    }
    let flowerpot = app
        .search_as(
            &app.admin_key,
            json!({ "query": "flowerpot", "spaceIds": [space_id], "mode": "SEMANTIC" }),
        )
        .await;
    for hit in flowerpot.data()["searchMemories"].as_array().unwrap() {
        assert!(
            !hit["chunk"].as_str().unwrap().contains("flowerpot"),
            "stale chunk: {hit}"
        );
    }
    assert_eq!(
        stats(&app, &space_id).await.1,
        (new_content.len() + "The garage door code is 4711".len()) as i64
    );
}

#[tokio::test]
async fn a_deleted_memory_is_gone_from_lists_counts_and_every_search_mode() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "bikes").await;
    let gone = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "The bicycle lock combination is 2468",
            json!({}),
        )
        .await;
    let kept = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "The bicycle tyres need air every month",
            json!({}),
        )
        .await;
    // Load the vector index first, so the delete has to update it.
    assert_eq!(
        search_ids(
            &app,
            &app.admin_key,
            &space_id,
            "bicycle lock combination",
            "SEMANTIC"
        )
        .await
        .len(),
        2
    );

    delete(&app, &app.admin_key, &gone).await.data();

    let listed = list(
        &app,
        &app.admin_key,
        &space_id,
        None,
        None,
        json!(null),
        "DESC",
    )
    .await;
    assert_eq!(list_ids(&listed), [kept.as_str()]);
    assert_eq!(list_total(&listed), 1);
    assert_eq!(
        stats(&app, &space_id).await,
        (1, "The bicycle tyres need air every month".len() as i64)
    );
    for mode in ["KEYWORD", "SEMANTIC", "HYBRID"] {
        let ids = search_ids(
            &app,
            &app.admin_key,
            &space_id,
            "bicycle lock combination",
            mode,
        )
        .await;
        assert_eq!(ids, [kept.as_str()], "{mode}");
    }
}

// ---------------------------------------------------------------------------------------------
// Who may write

#[tokio::test]
async fn a_view_grantee_reads_memories_but_every_write_is_forbidden() {
    let app = TestApp::spawn().await;
    let (viewer, viewer_key) = app.user("viewer", false).await;
    let (editor, editor_key) = app.user("editor", false).await;
    let space_id = app
        .space_as(
            &app.admin_key,
            "shared",
            json!({ "grants": [
                { "subjectKind": "USER", "subjectId": viewer, "permission": "VIEW" },
                { "subjectKind": "USER", "subjectId": editor, "permission": "EDIT" },
            ] }),
        )
        .await;
    let id = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "Standup moved to 9:30 on Tuesdays",
            json!({}),
        )
        .await;

    let read = get(&app, &viewer_key, &id).await;
    let listed = list(
        &app,
        &viewer_key,
        &space_id,
        None,
        None,
        json!(null),
        "DESC",
    )
    .await;
    let found = search_ids(&app, &viewer_key, &space_id, "standup tuesdays", "KEYWORD").await;
    let writes = [
        create(
            &app,
            &viewer_key,
            json!({ "spaceId": space_id, "content": "mine" }),
        )
        .await,
        batch(&app, &viewer_key, &space_id, json!([{ "content": "mine" }])).await,
        update(&app, &viewer_key, &id, json!({ "content": "changed" })).await,
        delete(&app, &viewer_key, &id).await,
        app.gql_as(
            Some(&viewer_key),
            THREAD,
            json!({ "s": space_id, "t": "x", "m": [{ "role": "user", "content": "hi" }] }),
        )
        .await,
    ];
    let by_editor = create(
        &app,
        &editor_key,
        json!({ "spaceId": space_id, "content": "Editor note" }),
    )
    .await;
    let editor_update = update(
        &app,
        &editor_key,
        &id,
        json!({ "content": "Standup moved to 9:45" }),
    )
    .await;

    assert_eq!(read.data()["memory"]["id"], id.as_str());
    assert_eq!(list_ids(&listed), [id.as_str()]);
    assert_eq!(found, [id.as_str()]);
    for w in &writes {
        assert_eq!(w.code(), "FORBIDDEN", "{}", w.body);
    }
    assert_eq!(
        by_editor.data()["createMemory"]["author"],
        json!({ "__typename": "User", "id": editor })
    );
    assert_eq!(
        editor_update.data()["updateMemory"]["content"],
        "Standup moved to 9:45"
    );
    assert_eq!(stats(&app, &space_id).await.0, 2);
}

#[tokio::test]
async fn space_tokens_write_with_edit_and_are_forbidden_with_view() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "tokens").await;
    let (_, edit_token) = app
        .space_token_as(&app.admin_key, &space_id, "EDIT", None)
        .await;
    let (_, view_token) = app
        .space_token_as(&app.admin_key, &space_id, "VIEW", None)
        .await;

    let by_edit = create(
        &app,
        &edit_token,
        json!({ "spaceId": space_id, "content": "From a token" }),
    )
    .await;
    let by_view = create(
        &app,
        &view_token,
        json!({ "spaceId": space_id, "content": "From a token" }),
    )
    .await;

    let m = &by_edit.data()["createMemory"];
    assert_eq!(m["author"], Value::Null, "a token's memory has no author");
    assert_eq!(by_view.code(), "FORBIDDEN");
    let id = m["id"].as_str().unwrap();
    assert_eq!(get(&app, &view_token, id).await.data()["memory"]["id"], id);
}

#[tokio::test]
async fn a_soft_deleted_space_takes_no_writes_until_restored() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "archived").await;
    let id = app
        .memory_as(&app.admin_key, &space_id, "Kept while deleted", json!({}))
        .await;
    app.gql(
        "mutation($id:ID!){ deleteSpace(id:$id){ id } }",
        json!({ "id": space_id }),
    )
    .await
    .data();

    let writes = [
        create(
            &app,
            &app.admin_key,
            json!({ "spaceId": space_id, "content": "new" }),
        )
        .await,
        batch(
            &app,
            &app.admin_key,
            &space_id,
            json!([{ "content": "new" }]),
        )
        .await,
        update(&app, &app.admin_key, &id, json!({ "content": "changed" })).await,
        delete(&app, &app.admin_key, &id).await,
        thread(
            &app,
            &space_id,
            "t",
            json!([{ "role": "user", "content": "hi" }]),
        )
        .await,
    ];
    app.gql(
        "mutation($id:ID!){ restoreSpace(id:$id){ id } }",
        json!({ "id": space_id }),
    )
    .await
    .data();
    let after_restore = create(
        &app,
        &app.admin_key,
        json!({ "spaceId": space_id, "content": "new" }),
    )
    .await;

    for w in &writes {
        assert_eq!(w.code(), "FORBIDDEN", "{}", w.body);
    }
    after_restore.data();
    assert_eq!(stats(&app, &space_id).await.0, 2);
}

#[tokio::test]
async fn writes_move_the_spaces_last_activity() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "activity").await;
    let last = |r: GqlResponse| r.data()["space"]["lastActivityAt"].clone();
    let initially = last(app.gql(STATS, json!({ "s": space_id })).await);

    let created = create(
        &app,
        &app.admin_key,
        json!({ "spaceId": space_id, "content": "first" }),
    )
    .await;
    let after_create = last(app.gql(STATS, json!({ "s": space_id })).await);
    let id = created.data()["createMemory"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(5)).await;
    update(&app, &app.admin_key, &id, json!({ "content": "second" }))
        .await
        .data();
    let after_update = last(app.gql(STATS, json!({ "s": space_id })).await);
    tokio::time::sleep(Duration::from_millis(5)).await;
    delete(&app, &app.admin_key, &id).await.data();
    let after_delete = last(app.gql(STATS, json!({ "s": space_id })).await);

    if !initially.is_null() {
        assert!(time(&after_create) > time(&initially));
    }
    assert!(time(&after_create) >= time(&created.data()["createMemory"]["createdAt"]));
    assert!(time(&after_update) > time(&after_create));
    assert!(time(&after_delete) > time(&after_update));
}

// ---------------------------------------------------------------------------------------------
// Expiry

#[tokio::test]
async fn an_expired_memory_disappears_from_reads_lists_counts_and_search() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "ferries").await;
    let live_text = "The harbour ferry leaves at noon";
    let live = app
        .memory_as(&app.admin_key, &space_id, live_text, json!({}))
        .await;
    let expires = Utc::now() + chrono::Duration::milliseconds(2000);
    let expiring = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "The harbour ferry ticket code is 9911",
            json!({ "expiresAt": expires.to_rfc3339(), "tags": ["ferry"] }),
        )
        .await;
    let both = HashSet::from([live.clone(), expiring.clone()]);
    let found = |ids: Vec<String>| ids.into_iter().collect::<HashSet<String>>();
    assert_eq!(
        get(&app, &app.admin_key, &expiring).await.data()["memory"]["id"],
        expiring.as_str()
    );
    assert_eq!(stats(&app, &space_id).await.0, 2);
    for mode in ["KEYWORD", "SEMANTIC", "HYBRID"] {
        assert_eq!(
            found(search_ids(&app, &app.admin_key, &space_id, "harbour ferry", mode).await),
            both
        );
    }

    let wait = (expires - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(150);
    tokio::time::sleep(wait).await;

    assert_eq!(
        get(&app, &app.admin_key, &expiring).await.code(),
        "NOT_FOUND"
    );
    let listed = list(
        &app,
        &app.admin_key,
        &space_id,
        None,
        None,
        json!(null),
        "DESC",
    )
    .await;
    assert_eq!(list_ids(&listed), [live.as_str()]);
    assert_eq!(list_total(&listed), 1);
    let tagged = list(
        &app,
        &app.admin_key,
        &space_id,
        None,
        None,
        json!({ "tags": ["ferry"] }),
        "DESC",
    )
    .await;
    assert_eq!(list_total(&tagged), 0);
    assert_eq!(stats(&app, &space_id).await, (1, live_text.len() as i64));
    for mode in ["KEYWORD", "SEMANTIC", "HYBRID"] {
        assert_eq!(
            search_ids(
                &app,
                &app.admin_key,
                &space_id,
                "harbour ferry ticket code",
                mode
            )
            .await,
            [live.as_str()],
            "{mode}"
        );
    }
    assert_eq!(
        update(
            &app,
            &app.admin_key,
            &expiring,
            json!({ "content": "revived" })
        )
        .await
        .code(),
        "NOT_FOUND"
    );

    // The sweep deletes the expired row and nothing else.
    let index = memspace::search::vector_index::VectorIndex::default();
    let swept = memspace::memories::service::sweep_expired(&app.db, &index)
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert!(swept <= 1, "swept {swept}");
    let rows = <entity::memory::Entity as sea_orm::EntityTrait>::find()
        .all(&app.db.read)
        .await
        .unwrap();
    let ids: Vec<String> = rows.iter().map(|m| m.id.to_string()).collect();
    assert_eq!(ids, [live]);
}

// ---------------------------------------------------------------------------------------------
// Statement counts

const SPACES_WITH_STATS: &str = "query($n:Int){ spaces(first:$n){ edges{ node{ id memoryCount \
    usedStorage owner{ __typename ... on User{ id } ... on Agent{ id } } } } } }";

/// Creates `n` spaces (owners rotating), each with two memories; returns id → content bytes.
async fn seed_spaces_with_memories(
    app: &TestApp,
    from: usize,
    n: usize,
    owners: &[String],
) -> HashMap<String, i64> {
    stream::iter(from..from + n)
        .map(|i| {
            let owner = owners[i % owners.len()].clone();
            async move {
                let id = app
                    .space_as(
                        &app.admin_key,
                        &format!("space {i}"),
                        json!({ "ownerId": owner }),
                    )
                    .await;
                let contents = vec![
                    format!("café note {i}"),
                    format!("second note of space {i}"),
                ];
                let bytes = contents.iter().map(|c| c.len() as i64).sum();
                app.memories_as(&app.admin_key, &id, &contents).await;
                (id, bytes)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

/// Runs the spaces page with counts; returns (statements, edges), checking every count.
async fn spaces_page_cost(app: &TestApp, n: usize, bytes: &HashMap<String, i64>) -> u64 {
    app.warm(&app.admin_key).await;
    let before = app.statements();
    let r = app.gql(SPACES_WITH_STATS, json!({ "n": n })).await;
    let cost = app.statements() - before;
    let edges = r.data()["spaces"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), n);
    for e in edges {
        let node = &e["node"];
        let id = node["id"].as_str().unwrap();
        assert_eq!(node["memoryCount"], 2, "{node}");
        assert_eq!(node["usedStorage"], bytes[id], "{node}");
        assert!(node["owner"]["id"].is_string(), "{node}");
    }
    cost
}

#[tokio::test]
async fn a_page_of_spaces_with_memory_counts_storage_and_owners_costs_the_same_for_5_or_200_spaces()
{
    let app = TestApp::spawn().await;
    let admin = viewer_id(&app, &app.admin_key).await;
    let (user, _) = app.user("owner", false).await;
    let (agent, _) = app.agent("owner-bot").await;
    let owners = [admin, user, agent];
    let mut bytes = seed_spaces_with_memories(&app, 0, 5, &owners).await;

    let cost_5 = spaces_page_cost(&app, 5, &bytes).await;
    bytes.extend(seed_spaces_with_memories(&app, 5, 195, &owners).await);
    let cost_200 = spaces_page_cost(&app, 200, &bytes).await;

    eprintln!("spaces page statements: 5 spaces → {cost_5}, 200 spaces → {cost_200}");
    assert_eq!(
        cost_5, cost_200,
        "statements for 5 spaces: {cost_5}, for 200: {cost_200} (N+1)"
    );
}

const MEMORIES_WITH_RELATIONS: &str = "query($s:ID!,$n:Int){ space(id:$s){ memories(first:$n){ \
    edges{ node{ tags author{ __typename } space{ id } } } } } }";

async fn memories_page_cost(app: &TestApp, space_id: &str, n: usize) -> u64 {
    app.warm(&app.admin_key).await;
    let before = app.statements();
    let r = app
        .gql(MEMORIES_WITH_RELATIONS, json!({ "s": space_id, "n": n }))
        .await;
    let cost = app.statements() - before;
    let edges = r.data()["space"]["memories"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), n);
    let authors: HashSet<String> = edges
        .iter()
        .map(|e| {
            e["node"]["author"]["__typename"]
                .as_str()
                .unwrap_or("null")
                .to_string()
        })
        .collect();
    assert_eq!(
        authors,
        HashSet::from(["User".into(), "Agent".into(), "null".into()])
    );
    assert!(edges.iter().all(|e| e["node"]["space"]["id"] == space_id));
    cost
}

/// Writes `n` tagged memories to the space as each of the given keys in turn.
async fn seed_mixed_authors(app: &TestApp, space_id: &str, keys: &[String], n: usize) {
    for (k, key) in keys.iter().enumerate() {
        let inputs: Vec<Value> = (0..n)
            .filter(|i| i % keys.len() == k)
            .map(|i| json!({ "content": format!("memory {i} by {k}"), "tags": [format!("t{i}"), "common"] }))
            .collect();
        if !inputs.is_empty() {
            batch(app, key, space_id, json!(inputs)).await.data();
        }
    }
}

#[tokio::test]
async fn a_page_of_memories_with_tags_authors_and_space_costs_the_same_for_5_or_100_memories() {
    let app = TestApp::spawn().await;
    let (editor, editor_key) = app.user("editor", false).await;
    let (agent, agent_key) = app.agent("writer-bot").await;
    let space_id = app
        .space_as(
            &app.admin_key,
            "busy",
            json!({ "grants": [
                { "subjectKind": "USER", "subjectId": editor, "permission": "EDIT" },
                { "subjectKind": "AGENT", "subjectId": agent, "permission": "EDIT" },
            ] }),
        )
        .await;
    let (_, token) = app
        .space_token_as(&app.admin_key, &space_id, "EDIT", None)
        .await;
    let keys = [app.admin_key.clone(), editor_key, agent_key, token];
    seed_mixed_authors(&app, &space_id, &keys, 5).await;

    let cost_5 = memories_page_cost(&app, &space_id, 5).await;
    seed_mixed_authors(&app, &space_id, &keys, 95).await;
    let cost_100 = memories_page_cost(&app, &space_id, 100).await;

    eprintln!("memories page statements: 5 memories → {cost_5}, 100 memories → {cost_100}");
    assert_eq!(
        cost_5, cost_100,
        "statements for 5 memories: {cost_5}, for 100: {cost_100} (N+1)"
    );
}

// ---------------------------------------------------------------------------------------------
// Memory counters: `memoryCount`/`usedStorage` come from counters on the space row, so after
// every kind of write they must still equal what the memories list says.

const CONTENTS: &str = "query($s:ID!){ space(id:$s){ memories(first:1000){ totalCount \
    edges{ node{ content } } } } }";
const SPACES_PAGE: &str = "{ spaces(first:50){ edges{ node{ id memoryCount usedStorage } } } }";

/// (count, bytes) of the memories `Space.memories` lists (live, not superseded).
async fn listed_usage(app: &TestApp, space_id: &str) -> (i64, i64) {
    let r = app.gql(CONTENTS, json!({ "s": space_id })).await;
    let conn = &r.data()["space"]["memories"];
    let contents: Vec<&str> = conn["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(conn["totalCount"].as_i64(), Some(contents.len() as i64));
    (
        contents.len() as i64,
        contents.iter().map(|c| c.len() as i64).sum(),
    )
}

/// (memoryCount, usedStorage) of the space as the spaces list reports it (the batched path).
async fn paged_usage(app: &TestApp, space_id: &str) -> (i64, i64) {
    let r = app.gql(SPACES_PAGE, json!({})).await;
    let node = r.data()["spaces"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .find(|n| n["id"] == space_id)
        .unwrap_or_else(|| panic!("space {space_id} not on the first page"))
        .clone();
    (
        node["memoryCount"].as_i64().unwrap(),
        node["usedStorage"].as_i64().unwrap(),
    )
}

/// The counters as stored on the space row (expired-but-unswept memories included).
async fn stored_counters(app: &TestApp, space_id: &str) -> (i64, i64) {
    let id = uuid::Uuid::parse_str(space_id).unwrap();
    let s = <entity::space::Entity as sea_orm::EntityTrait>::find_by_id(id)
        .one(&app.db.read)
        .await
        .unwrap()
        .unwrap();
    (s.memory_count, s.memory_bytes)
}

/// Asserts that both the single-space and the page path agree with the list; returns them.
async fn assert_usage_matches_list(app: &TestApp, space_id: &str, step: &str) -> (i64, i64) {
    let expected = listed_usage(app, space_id).await;
    assert_eq!(stats(app, space_id).await, expected, "space(id): {step}");
    assert_eq!(
        paged_usage(app, space_id).await,
        expected,
        "spaces page: {step}"
    );
    expected
}

#[tokio::test]
async fn memory_count_and_storage_follow_batch_creates_updates_and_deletes() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "counted").await;
    let other = space(&app, "bystander").await;
    app.memories_as(&app.admin_key, &other, &["elsewhere".into()])
        .await;

    let ids = app
        .memories_as(
            &app.admin_key,
            &space_id,
            &(0..5)
                .map(|i| format!("note {i} about the café façade"))
                .collect::<Vec<_>>(),
        )
        .await;
    let after_batch = assert_usage_matches_list(&app, &space_id, "batch").await;
    assert_eq!(after_batch.0, 5);

    update(
        &app,
        &app.admin_key,
        &ids[0],
        json!({ "content": "a much longer note about the café façade and its ünïcode" }),
    )
    .await
    .data();
    let longer = assert_usage_matches_list(&app, &space_id, "longer content").await;
    assert!(longer.1 > after_batch.1);

    update(&app, &app.admin_key, &ids[1], json!({ "content": "é" }))
        .await
        .data();
    let shorter = assert_usage_matches_list(&app, &space_id, "shorter content").await;
    assert!(shorter.1 < longer.1);

    update(
        &app,
        &app.admin_key,
        &ids[2],
        json!({ "importance": 9, "tags": ["x"] }),
    )
    .await
    .data();
    assert_eq!(
        assert_usage_matches_list(&app, &space_id, "no content change").await,
        shorter
    );

    delete(&app, &app.admin_key, &ids[3]).await.data();
    let deleted = assert_usage_matches_list(&app, &space_id, "delete").await;
    assert_eq!(deleted.0, 4);
    assert_eq!(
        delete(&app, &app.admin_key, &ids[3]).await.code(),
        "NOT_FOUND"
    );
    assert_eq!(
        assert_usage_matches_list(&app, &space_id, "second delete").await,
        deleted
    );
    assert_eq!(stored_counters(&app, &space_id).await, deleted);
    assert_eq!(stats(&app, &other).await, (1, "elsewhere".len() as i64));
}

#[tokio::test]
async fn a_batch_failing_at_its_fourth_item_leaves_the_memory_counts_unchanged() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "atomic").await;
    app.memories_as(&app.admin_key, &space_id, &["already here".into()])
        .await;
    let before = assert_usage_matches_list(&app, &space_id, "seed").await;
    let mut inputs: Vec<Value> = (0..5)
        .map(|i| json!({ "content": format!("batch item {i}") }))
        .collect();
    inputs[3] = json!({ "content": "ok", "importance": 11 });

    let r = batch(&app, &app.admin_key, &space_id, json!(inputs)).await;

    assert_eq!(r.code(), "VALIDATION_ERROR");
    assert_eq!(r.error()["extensions"]["index"], 3);
    assert_eq!(
        assert_usage_matches_list(&app, &space_id, "failed batch").await,
        before
    );
    assert_eq!(stored_counters(&app, &space_id).await, before);
}

#[tokio::test]
async fn an_expired_memory_leaves_the_counts_at_once_and_the_sweep_keeps_them_right() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "expiring").await;
    let (live, later) = ("stays", "expires after the test");
    let soon = ["goes soon", "goes soon too, with more bytes"];
    app.memory_as(&app.admin_key, &space_id, live, json!({}))
        .await;
    let expires = Utc::now() + chrono::Duration::milliseconds(1500);
    for text in soon {
        app.memory_as(
            &app.admin_key,
            &space_id,
            text,
            json!({ "expiresAt": expires.to_rfc3339() }),
        )
        .await;
    }
    // Expiring later than the test lasts: counted throughout.
    app.memory_as(
        &app.admin_key,
        &space_id,
        later,
        json!({ "expiresAt": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339() }),
    )
    .await;
    let visible = (2, (live.len() + later.len()) as i64);
    let soon_bytes: i64 = soon.iter().map(|t| t.len() as i64).sum();
    assert_eq!(
        assert_usage_matches_list(&app, &space_id, "before expiry").await,
        (4, visible.1 + soon_bytes)
    );

    let wait = (expires - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(150);
    tokio::time::sleep(wait).await;

    assert_eq!(
        assert_usage_matches_list(&app, &space_id, "expired, not swept").await,
        visible
    );
    // Not swept yet: the row still holds them, the read subtracts them.
    assert_eq!(stored_counters(&app, &space_id).await.0, 4);

    let index = memspace::search::vector_index::VectorIndex::default();
    let swept = memspace::memories::service::sweep_expired(&app.db, &index)
        .await
        .map_err(|e| e.message())
        .unwrap();

    // The background sweep (every 60 s here) may have taken some of them first.
    assert!(swept <= 2, "swept {swept}");
    assert_eq!(
        assert_usage_matches_list(&app, &space_id, "swept").await,
        visible
    );
    assert_eq!(stored_counters(&app, &space_id).await, visible);
}

#[tokio::test]
async fn the_background_sweep_takes_expired_memories_out_of_the_stored_counters() {
    let app = TestApp::spawn_with(|c| c.sweep_interval = Duration::from_millis(200)).await;
    let spaces = [space(&app, "sweep a").await, space(&app, "sweep b").await];
    let expires = Utc::now() + chrono::Duration::milliseconds(1000);
    for (i, s) in spaces.iter().enumerate() {
        app.memories_as(&app.admin_key, s, &[format!("kept {i}")])
            .await;
        let r = batch(
            &app,
            &app.admin_key,
            s,
            json!([
                { "content": format!("short-lived {i}"), "expiresAt": expires.to_rfc3339() },
                { "content": format!("also short-lived {i}"), "expiresAt": expires.to_rfc3339() },
            ]),
        )
        .await;
        r.data();
        assert_eq!(stats(&app, s).await.0, 3);
    }

    // Wait for the sweep to delete every expired row.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = <entity::memory::Entity as sea_orm::EntityTrait>::find()
            .all(&app.db.read)
            .await
            .unwrap()
            .len();
        if left == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left} memories left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (i, s) in spaces.iter().enumerate() {
        let kept = (1, format!("kept {i}").len() as i64);
        assert_eq!(
            assert_usage_matches_list(&app, s, "after sweep").await,
            kept
        );
        assert_eq!(stored_counters(&app, s).await, kept);
    }
}

#[tokio::test]
async fn eight_concurrent_writers_of_one_space_leave_an_exact_count() {
    let app = TestApp::spawn().await;
    let space_id = space(&app, "busy writers").await;
    let doomed = app
        .memories_as(
            &app.admin_key,
            &space_id,
            &(0..8).map(|i| format!("to delete {i}")).collect::<Vec<_>>(),
        )
        .await;

    // 8 writers × 10 creates, and the 8 deletes racing with them.
    let app_ref = &app;
    let space_ref = &space_id;
    let writers = (0..8).map(|w| async move {
        for i in 0..10 {
            app_ref
                .memory_as(
                    &app_ref.admin_key,
                    space_ref,
                    &format!("writer {w} note {i}{}", "é".repeat(w)),
                    json!({}),
                )
                .await;
        }
    });
    let deleters = doomed.iter().map(|id| async move {
        delete(app_ref, &app_ref.admin_key, id).await.data();
    });
    futures::future::join(
        futures::future::join_all(writers),
        futures::future::join_all(deleters),
    )
    .await;

    let expected_bytes: i64 = (0..8)
        .flat_map(|w| (0..10).map(move |i| format!("writer {w} note {i}{}", "é".repeat(w))))
        .map(|c| c.len() as i64)
        .sum();
    assert_eq!(
        assert_usage_matches_list(&app, &space_id, "concurrent writers").await,
        (80, expected_bytes)
    );
    assert_eq!(stored_counters(&app, &space_id).await, (80, expected_bytes));
}

#[tokio::test]
async fn the_counter_migration_backfills_counts_from_the_stored_memories() {
    use migration::MigratorTrait;
    let app = TestApp::spawn().await;
    let plain = space(&app, "backfilled").await;
    let superseding = app
        .space_as(
            &app.admin_key,
            "backfilled supersede",
            json!({ "duplicatePolicy": "SUPERSEDE" }),
        )
        .await;
    let empty = space(&app, "backfilled empty").await;
    app.memories_as(&app.admin_key, &plain, &["one".into(), "twø".into()])
        .await;
    app.memory_as(
        &app.admin_key,
        &plain,
        "expiring",
        json!({ "expiresAt": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339() }),
    )
    .await;
    for text in ["same words", "Same  words", "other words"] {
        app.memory_as(&app.admin_key, &superseding, text, json!({}))
            .await;
    }
    let before: Vec<(i64, i64)> = stream::iter([&plain, &superseding, &empty])
        .then(|s| stored_counters(&app, s))
        .collect()
        .await;

    crate::common::migrate_down_through(&app.db, "m20261127_000007_space_counters").await;
    migration::Migrator::up(&app.db.write, None).await.unwrap();

    let after: Vec<(i64, i64)> = stream::iter([&plain, &superseding, &empty])
        .then(|s| stored_counters(&app, s))
        .collect()
        .await;
    assert_eq!(after, before);
    assert_eq!(after, [(3, 3 + 4 + 8), (2, 11 + 11), (0, 0)]);
    for s in [&plain, &superseding, &empty] {
        assert_usage_matches_list(&app, s, "after backfill").await;
    }
}

/// Texts for the counter property: "alpha" and " ALPHA  " are the same memory to the duplicate
/// check (same normalised content) with other byte lengths; the rest differ, some multi-byte.
const COUNTED_TEXTS: [&str; 6] = [
    "alpha",
    " ALPHA  ",
    "bêta gamma",
    "delta epsilon zeta eta theta",
    "ünïcødé θ",
    "x",
];
const POLICIES: [Option<&str>; 5] = [
    None,
    Some("ALLOW"),
    Some("REJECT"),
    Some("SUPERSEDE"),
    Some("MERGE"),
];

#[derive(Clone, Debug)]
enum CountedOp {
    /// `createMemory` of a text with an `onDuplicate` override.
    Create(usize, Option<&'static str>),
    /// `createMemories` of several.
    Batch(Vec<(usize, Option<&'static str>)>),
    /// `updateMemory` of any memory written so far (deleted and superseded ones included).
    Update(proptest::sample::Index, usize),
    Delete(proptest::sample::Index),
}

fn counted_ops() -> impl proptest::strategy::Strategy<Value = (usize, Vec<CountedOp>)> {
    use proptest::prelude::*;
    let item = (
        0..COUNTED_TEXTS.len(),
        prop::sample::select(POLICIES.to_vec()),
    );
    let op = prop_oneof![
        4 => item.clone().prop_map(|(t, p)| CountedOp::Create(t, p)),
        2 => prop::collection::vec(item, 1..5).prop_map(CountedOp::Batch),
        2 => (any::<prop::sample::Index>(), 0..COUNTED_TEXTS.len())
            .prop_map(|(i, t)| CountedOp::Update(i, t)),
        2 => any::<prop::sample::Index>().prop_map(CountedOp::Delete),
    ];
    // The space's own policy (index into the non-None policies), then the writes.
    (1..POLICIES.len(), prop::collection::vec(op, 1..25))
}

fn write_input(text: usize, policy: Option<&str>) -> Value {
    let mut input = json!({ "content": COUNTED_TEXTS[text] });
    if let Some(p) = policy {
        input["onDuplicate"] = json!(p);
    }
    input
}

/// Runs the writes one by one; after each, the counts must equal the list's.
async fn check_counted_ops(policy: usize, ops: Vec<CountedOp>) -> Result<(), String> {
    let app = TestApp::spawn().await;
    let space_id = app
        .space_as(
            &app.admin_key,
            "property",
            json!({ "duplicatePolicy": POLICIES[policy] }),
        )
        .await;
    let mut written: Vec<String> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let r = match op {
            CountedOp::Create(t, p) => {
                let mut input = write_input(*t, *p);
                input["spaceId"] = json!(space_id);
                app.gql(
                    "mutation($i:CreateMemoryInput!){ createMemory(input:$i){ id } }",
                    json!({ "i": input }),
                )
                .await
            }
            CountedOp::Batch(items) => {
                let inputs: Vec<Value> = items.iter().map(|(t, p)| write_input(*t, *p)).collect();
                batch(&app, &app.admin_key, &space_id, json!(inputs)).await
            }
            CountedOp::Update(i, t) if !written.is_empty() => {
                let id = i.get(&written).clone();
                update(
                    &app,
                    &app.admin_key,
                    &id,
                    json!({ "content": COUNTED_TEXTS[*t] }),
                )
                .await
            }
            CountedOp::Delete(i) if !written.is_empty() => {
                let id = i.get(&written).clone();
                delete(&app, &app.admin_key, &id).await
            }
            _ => continue,
        };
        let codes = r.codes();
        if codes.is_empty() {
            let data = r.data();
            for m in [&data["createMemory"]]
                .into_iter()
                .chain(data["createMemories"].as_array().into_iter().flatten())
            {
                if let Some(id) = m["id"].as_str() {
                    written.push(id.to_string());
                }
            }
        } else if !matches!(codes.as_slice(), [c] if c == "DUPLICATE" || c == "NOT_FOUND") {
            return Err(format!("step {step} {op:?}: {}", r.body));
        }
        let listed = listed_usage(&app, &space_id).await;
        let counted = stats(&app, &space_id).await;
        if counted != listed {
            return Err(format!(
                "after step {step} {op:?}: memoryCount/usedStorage {counted:?}, list {listed:?}"
            ));
        }
    }
    let listed = listed_usage(&app, &space_id).await;
    let paged = paged_usage(&app, &space_id).await;
    if paged != listed {
        return Err(format!("spaces page {paged:?}, list {listed:?}"));
    }
    let stored = stored_counters(&app, &space_id).await;
    if stored != listed {
        return Err(format!("stored counters {stored:?}, list {listed:?}"));
    }
    Ok(())
}

#[test]
fn memory_counts_equal_the_listed_memories_after_any_sequence_of_writes() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: 8,
        max_shrink_iters: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&counted_ops(), |(policy, ops)| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(check_counted_ops(policy, ops))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
