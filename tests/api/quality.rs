//! Memory quality: duplicate policies (ALLOW, REJECT, SUPERSEDE, MERGE) for exact and
//! near duplicates, the per-write `onDuplicate` override, duplicates inside one batch, versions
//! with CONFLICT on a stale `expectedVersion`, and idempotent writes by `externalId`.
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};

// ---------------------------------------------------------------------------------------------
// Texts. Their cosines under `builtin-hash-384` are measured by the tests themselves (see
// `cosine`), so a change to the embedder fails loudly instead of silently testing nothing.

/// The memory every duplicate is measured against.
const BASE: &str =
    "Deploys to the staging cluster run every night at two o'clock from the release branch";
/// BASE with other case and spacing: the same normalised content (same content hash).
const BASE_RESHAPED: &str =
    "  deploys TO the Staging   cluster run every NIGHT\tat two o'clock from the release branch ";
/// One plural more: cosine ≈ 0.98, a near duplicate at the default threshold (0.95).
const NEAR: &str =
    "Deploys to the staging cluster run every night at two o'clock from the release branches";
/// Another tense: cosine ≈ 0.93, not a duplicate at the default threshold.
const FAR: &str =
    "Deploys to the staging cluster ran every night at two o'clock from the release branch";
/// Cosine ≈ 0.971 to BASE.
const EDGE_HIGH: &str =
    "The deploy to the staging cluster runs every night at two o'clock from the release branch";
/// Cosine ≈ 0.962 to BASE.
const EDGE_LOW: &str =
    "Deployments to the staging cluster run every night at two o'clock from the release branch";
/// Unrelated to all of the above.
const OTHER: &str = "The office coffee machine is descaled every Friday afternoon by facilities";

/// Cosine of two texts' embeddings under the default embedder (vectors are unit length).
fn cosine(a: &str, b: &str) -> f32 {
    use memspace::search::embedder::HashEmbedder;
    use memspace::search::registry::DEFAULT_EMBEDDER;
    let v = HashEmbedder::new(DEFAULT_EMBEDDER, 384).embed_texts(&[a.to_string(), b.to_string()]);
    memspace::search::embedder::dot(&v[0], &v[1])
}

// ---------------------------------------------------------------------------------------------
// Helpers

const MEMORY: &str = "id content tags metadata importance confidence version createdAt updatedAt \
    externalId supersedes{ id } supersededBy{ id }";

/// A space of the admin with a duplicate policy (and threshold when given).
async fn space(app: &TestApp, policy: &str, threshold: Option<f64>) -> String {
    let mut extra = json!({ "duplicatePolicy": policy });
    if let Some(t) = threshold {
        extra["duplicateThreshold"] = json!(t);
    }
    let name = format!("quality-{}", uuid::Uuid::now_v7().simple());
    app.space_as(&app.admin_key, &name, extra).await
}

/// `createMemory` of `content` plus extra input fields; the memory carries `MEMORY`.
async fn create(app: &TestApp, space_id: &str, content: &str, extra: Value) -> GqlResponse {
    let mut input = json!({ "spaceId": space_id, "content": content });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        input[k] = v;
    }
    app.gql(
        &format!("mutation($i:CreateMemoryInput!){{ createMemory(input:$i){{ {MEMORY} }} }}"),
        json!({ "i": input }),
    )
    .await
}

/// Like `create`, panicking on errors; returns the memory.
async fn created(app: &TestApp, space_id: &str, content: &str, extra: Value) -> Value {
    create(app, space_id, content, extra).await.data()["createMemory"].clone()
}

/// `createMemories` with whole `MemoryInput`s.
async fn batch(app: &TestApp, space_id: &str, inputs: Value) -> GqlResponse {
    app.gql(
        &format!(
            "mutation($s:ID!,$i:[MemoryInput!]!){{ createMemories(spaceId:$s,inputs:$i){{ {MEMORY} }} }}"
        ),
        json!({ "s": space_id, "i": inputs }),
    )
    .await
}

/// Like `batch`, panicking on errors; returns the memories in input order.
async fn batched(app: &TestApp, space_id: &str, inputs: Value) -> Vec<Value> {
    batch(app, space_id, inputs).await.data()["createMemories"]
        .as_array()
        .expect("createMemories is a list")
        .clone()
}

async fn update(
    app: &TestApp,
    id: &str,
    input: Value,
    expected_version: Option<i64>,
) -> GqlResponse {
    app.gql(
        &format!(
            "mutation($id:ID!,$i:UpdateMemoryInput!,$v:Int){{ \
               updateMemory(id:$id,input:$i,expectedVersion:$v){{ {MEMORY} }} }}"
        ),
        json!({ "id": id, "i": input, "v": expected_version }),
    )
    .await
}

async fn get(app: &TestApp, id: &str) -> Value {
    app.gql(
        &format!("query($id:ID!){{ memory(id:$id){{ {MEMORY} }} }}"),
        json!({ "id": id }),
    )
    .await
    .data()["memory"]
        .clone()
}

/// `Space.memoryCount`.
async fn count(app: &TestApp, space_id: &str) -> i64 {
    app.gql(
        "query($s:ID!){ space(id:$s){ memoryCount } }",
        json!({ "s": space_id }),
    )
    .await
    .data()["space"]["memoryCount"]
        .as_i64()
        .expect("memoryCount is a number")
}

/// Ids of `Space.memories` (one page of up to 1000), as a set.
async fn listed(app: &TestApp, space_id: &str, include_superseded: bool) -> HashSet<String> {
    let r = app
        .gql(
            "query($s:ID!,$f:MemoryFilterInput){ space(id:$s){ \
               memories(first:1000,filter:$f){ totalCount edges{ node{ id } } } } }",
            json!({ "s": space_id, "f": { "includeSuperseded": include_superseded } }),
        )
        .await;
    let conn = &r.data()["space"]["memories"];
    let ids: HashSet<String> = conn["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(conn["totalCount"].as_u64(), Some(ids.len() as u64));
    ids
}

/// Ids a search of `mode` finds in the space, as a set.
async fn searched(
    app: &TestApp,
    space_id: &str,
    query: &str,
    mode: &str,
    include_superseded: bool,
) -> HashSet<String> {
    app.search_as(
        &app.admin_key,
        json!({
            "query": query,
            "spaceIds": [space_id],
            "mode": mode,
            "limit": 100,
            "filter": { "includeSuperseded": include_superseded },
        }),
    )
    .await
    .hit_ids()
    .into_iter()
    .collect()
}

fn id(m: &Value) -> String {
    m["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {m}"))
        .to_string()
}

fn version(m: &Value) -> i64 {
    m["version"]
        .as_i64()
        .unwrap_or_else(|| panic!("no version in {m}"))
}

fn time(m: &Value, field: &str) -> DateTime<Utc> {
    m[field]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("no {field} in {m}"))
        .with_timezone(&Utc)
}

fn set<const N: usize>(ids: [&str; N]) -> HashSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Asserts a DUPLICATE error naming `existing` (and `index`, for a batch).
fn assert_duplicate(r: &GqlResponse, existing: Option<&str>, index: Option<u64>) {
    assert_eq!(r.code(), "DUPLICATE", "{}", r.body);
    let ext = &r.error()["extensions"];
    // A stored memory is named by id; an earlier item of the same (rolled-back) batch by its
    // position, since its id never came to exist.
    assert!(
        ext["existingId"].is_string() || ext["duplicateOfIndex"].is_u64(),
        "no extensions.existingId or duplicateOfIndex in {}",
        r.body
    );
    if let Some(e) = existing {
        assert_eq!(ext["existingId"].as_str(), Some(e), "{}", r.body);
    }
    assert_eq!(
        ext["index"].as_u64(),
        index,
        "extensions.index in {}",
        r.body
    );
    assert!(r.body["data"].is_null(), "nothing returned: {}", r.body);
}

// ---------------------------------------------------------------------------------------------
// The texts really are what the tests take them for

#[test]
fn the_test_texts_have_the_cosines_the_tests_rely_on() {
    assert!(cosine(BASE, BASE_RESHAPED) > 0.999);
    assert!(cosine(BASE, NEAR) >= 0.95, "NEAR: {}", cosine(BASE, NEAR));
    assert!(cosine(BASE, FAR) < 0.95, "FAR: {}", cosine(BASE, FAR));
    let (high, low) = (cosine(BASE, EDGE_HIGH), cosine(BASE, EDGE_LOW));
    assert!(
        high > low + 0.004 && high < 0.99 && low > 0.95,
        "EDGE_HIGH {high}, EDGE_LOW {low}"
    );
    assert!(cosine(BASE, OTHER) < 0.5);
}

// ---------------------------------------------------------------------------------------------
// ALLOW

#[tokio::test]
async fn allow_stores_exact_and_near_duplicates_side_by_side() {
    let app = TestApp::spawn().await;
    let s = space(&app, "ALLOW", None).await;

    let a = created(&app, &s, BASE, json!({})).await;
    let b = created(&app, &s, BASE_RESHAPED, json!({})).await;
    let c = created(&app, &s, NEAR, json!({})).await;

    assert_eq!(
        listed(&app, &s, false).await,
        set([&id(&a), &id(&b), &id(&c)])
    );
    assert_eq!(count(&app, &s).await, 3);
}

#[tokio::test]
async fn a_new_space_allows_duplicates_at_a_threshold_of_0_95() {
    let app = TestApp::spawn().await;
    let s = app.space_as(&app.admin_key, "defaults", json!({})).await;

    let r = app
        .gql(
            "query($s:ID!){ space(id:$s){ duplicatePolicy duplicateThreshold } }",
            json!({ "s": s }),
        )
        .await;

    assert_eq!(r.data()["space"]["duplicatePolicy"], "ALLOW");
    assert_eq!(r.data()["space"]["duplicateThreshold"].as_f64(), Some(0.95));
}

// ---------------------------------------------------------------------------------------------
// REJECT

#[tokio::test]
async fn reject_refuses_the_same_content_in_other_case_and_spacing() {
    let app = TestApp::spawn().await;
    let s = space(&app, "REJECT", None).await;
    let first = created(&app, &s, BASE, json!({})).await;

    let r = create(&app, &s, BASE_RESHAPED, json!({})).await;

    assert_duplicate(&r, Some(&id(&first)), None);
    assert_eq!(listed(&app, &s, true).await, set([&id(&first)]));
    assert_eq!(count(&app, &s).await, 1);
}

#[tokio::test]
async fn reject_refuses_a_near_duplicate_at_or_above_the_threshold() {
    let app = TestApp::spawn().await;
    let s = space(&app, "REJECT", None).await;
    let first = created(&app, &s, BASE, json!({})).await;

    let r = create(&app, &s, NEAR, json!({})).await;

    assert_duplicate(&r, Some(&id(&first)), None);
    assert_eq!(count(&app, &s).await, 1);
}

#[tokio::test]
async fn reject_stores_a_similar_memory_below_the_threshold() {
    let app = TestApp::spawn().await;
    let s = space(&app, "REJECT", None).await;
    let first = created(&app, &s, BASE, json!({})).await;

    let second = created(&app, &s, FAR, json!({})).await;

    assert_eq!(
        listed(&app, &s, false).await,
        set([&id(&first), &id(&second)])
    );
}

#[tokio::test]
async fn the_threshold_separates_two_measured_cosines() {
    let app = TestApp::spawn().await;
    let (high, low) = (cosine(BASE, EDGE_HIGH), cosine(BASE, EDGE_LOW));
    let between = ((high + low) / 2.0) as f64;
    let s = space(&app, "REJECT", Some(between)).await;
    let first = created(&app, &s, BASE, json!({})).await;

    let above = create(&app, &s, EDGE_HIGH, json!({})).await;
    let below = create(&app, &s, EDGE_LOW, json!({})).await;

    assert_duplicate(&above, Some(&id(&first)), None);
    let below = id(&below.data()["createMemory"]);
    assert_eq!(listed(&app, &s, false).await, set([&id(&first), &below]));
}

#[tokio::test]
async fn update_space_changes_the_policy_and_threshold_for_later_writes() {
    let app = TestApp::spawn().await;
    let s = space(&app, "ALLOW", None).await;
    let first = created(&app, &s, BASE, json!({})).await;
    created(&app, &s, FAR, json!({})).await;

    let r = app
        .gql(
            "mutation($s:ID!){ updateSpace(id:$s,input:{duplicatePolicy:REJECT,duplicateThreshold:0.9}){ \
               duplicatePolicy duplicateThreshold } }",
            json!({ "s": s }),
        )
        .await;
    assert_eq!(r.data()["updateSpace"]["duplicatePolicy"], "REJECT");
    assert_eq!(
        r.data()["updateSpace"]["duplicateThreshold"].as_f64(),
        Some(0.9)
    );

    // FAR (≈ 0.93) was stored under ALLOW; at 0.9 it now counts as a duplicate of BASE or of
    // the stored FAR itself (same content): either way, it is rejected.
    let again = create(&app, &s, FAR, json!({})).await;
    assert_duplicate(&again, None, None);
    let near = create(&app, &s, EDGE_LOW, json!({})).await;
    assert_duplicate(&near, None, None);
    assert_eq!(count(&app, &s).await, 2);
    let unrelated = created(&app, &s, OTHER, json!({})).await;
    assert_ne!(id(&unrelated), id(&first));
    assert_eq!(count(&app, &s).await, 3);
}

#[tokio::test]
async fn a_duplicate_threshold_outside_half_to_one_is_rejected() {
    let app = TestApp::spawn().await;

    for bad in [0.49, 1.01] {
        let r = app
            .create_space_as(
                &app.admin_key,
                json!({ "name": format!("t{bad}"), "duplicateThreshold": bad }),
            )
            .await;
        assert_eq!(r.code(), "VALIDATION_ERROR", "threshold {bad}: {}", r.body);
        assert_eq!(r.field(), "duplicateThreshold");
    }
}

// ---------------------------------------------------------------------------------------------
// SUPERSEDE

#[tokio::test]
async fn supersede_stores_the_new_memory_and_hides_the_old_one() {
    let app = TestApp::spawn().await;
    let s = space(&app, "SUPERSEDE", None).await;
    let old = created(&app, &s, BASE, json!({})).await;
    let bystander = created(&app, &s, OTHER, json!({})).await;

    let new = created(&app, &s, NEAR, json!({})).await;

    let (old_id, new_id, other_id) = (id(&old), id(&new), id(&bystander));
    assert_ne!(new_id, old_id);
    assert_eq!(new["supersedes"]["id"], json!(old_id));
    assert!(new["supersededBy"].is_null());
    let old_now = get(&app, &old_id).await;
    assert_eq!(old_now["supersededBy"]["id"], json!(new_id));
    assert!(old_now["supersedes"].is_null());

    assert_eq!(listed(&app, &s, false).await, set([&new_id, &other_id]));
    assert_eq!(
        listed(&app, &s, true).await,
        set([&old_id, &new_id, &other_id])
    );
    assert_eq!(count(&app, &s).await, 2);
    for mode in ["KEYWORD", "SEMANTIC", "HYBRID"] {
        let hidden = searched(&app, &s, "staging cluster release branch", mode, false).await;
        assert!(hidden.contains(&new_id), "{mode}: {hidden:?}");
        assert!(!hidden.contains(&old_id), "{mode} shows the superseded one");
        let all = searched(&app, &s, "staging cluster release branch", mode, true).await;
        assert!(
            all.contains(&old_id) && all.contains(&new_id),
            "{mode}: {all:?}"
        );
    }
}

#[tokio::test]
async fn supersede_chains_each_new_version_to_the_last_one() {
    let app = TestApp::spawn().await;
    let s = space(&app, "SUPERSEDE", None).await;
    let v1 = created(&app, &s, BASE, json!({})).await;

    let v2 = created(&app, &s, BASE_RESHAPED, json!({})).await;
    let v3 = created(&app, &s, NEAR, json!({})).await;

    assert_eq!(v2["supersedes"]["id"], json!(id(&v1)));
    assert_eq!(v3["supersedes"]["id"], json!(id(&v2)));
    assert_eq!(
        get(&app, &id(&v2)).await["supersededBy"]["id"],
        json!(id(&v3))
    );
    assert_eq!(listed(&app, &s, false).await, set([&id(&v3)]));
    assert_eq!(listed(&app, &s, true).await.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// MERGE

#[tokio::test]
async fn merge_folds_a_duplicate_into_the_existing_memory() {
    let app = TestApp::spawn().await;
    let s = space(&app, "MERGE", None).await;
    let first = created(
        &app,
        &s,
        BASE,
        json!({
            "tags": ["deploy", "staging"],
            "metadata": { "owner": "ops", "window": "2am" },
            "importance": 4,
            "confidence": 0.9,
        }),
    )
    .await;

    let merged = created(
        &app,
        &s,
        BASE_RESHAPED,
        json!({
            "tags": ["staging", "nightly"],
            "metadata": { "window": "02:00", "channel": "#ops" },
            "importance": 8,
            "confidence": 0.6,
        }),
    )
    .await;

    assert_eq!(id(&merged), id(&first));
    assert_eq!(merged["content"], BASE);
    assert_eq!(merged["tags"], json!(["deploy", "nightly", "staging"]));
    assert_eq!(
        merged["metadata"],
        json!({ "owner": "ops", "window": "02:00", "channel": "#ops" })
    );
    assert_eq!(merged["importance"], 8);
    assert_eq!(merged["confidence"].as_f64(), Some(0.9));
    assert_eq!(version(&merged), version(&first) + 1);
    assert!(time(&merged, "updatedAt") > time(&first, "updatedAt"));
    assert_eq!(merged["createdAt"], first["createdAt"]);
    assert_eq!(get(&app, &id(&first)).await, merged);
    assert_eq!(count(&app, &s).await, 1);
}

#[tokio::test]
async fn merge_takes_near_duplicates_too_and_bumps_the_version_each_time() {
    let app = TestApp::spawn().await;
    let s = space(&app, "MERGE", None).await;
    let first = created(&app, &s, BASE, json!({ "importance": 6 })).await;

    let second = created(&app, &s, NEAR, json!({ "importance": 2, "tags": ["a"] })).await;
    let third = created(&app, &s, BASE_RESHAPED, json!({ "tags": ["b"] })).await;

    assert_eq!(id(&second), id(&first));
    assert_eq!(id(&third), id(&first));
    assert_eq!(
        [version(&first), version(&second), version(&third)],
        [1, 2, 3]
    );
    assert_eq!(third["importance"], 6);
    assert_eq!(third["tags"], json!(["a", "b"]));
    assert_eq!(count(&app, &s).await, 1);
}

// ---------------------------------------------------------------------------------------------
// onDuplicate overrides the space's policy for one write

#[tokio::test]
async fn on_duplicate_overrides_the_space_policy_for_one_write() {
    let app = TestApp::spawn().await;
    let rejecting = space(&app, "REJECT", None).await;
    let allowing = space(&app, "ALLOW", None).await;
    let original = created(&app, &rejecting, BASE, json!({})).await;
    let allowed_original = created(&app, &allowing, BASE, json!({})).await;

    let allowed = create(
        &app,
        &rejecting,
        BASE_RESHAPED,
        json!({ "onDuplicate": "ALLOW" }),
    )
    .await;
    let merged = created(
        &app,
        &rejecting,
        NEAR,
        json!({ "onDuplicate": "MERGE", "tags": ["merged"] }),
    )
    .await;
    let rejected = create(&app, &allowing, NEAR, json!({ "onDuplicate": "REJECT" })).await;
    let superseding = created(&app, &allowing, NEAR, json!({ "onDuplicate": "SUPERSEDE" })).await;

    let allowed = id(&allowed.data()["createMemory"]);
    assert_ne!(allowed, id(&original));
    assert!(
        [id(&original), allowed.clone()].contains(&id(&merged)),
        "MERGE folds into one of the stored duplicates: {merged}"
    );
    assert_eq!(merged["tags"], json!(["merged"]));
    assert_duplicate(&rejected, Some(&id(&allowed_original)), None);
    assert_eq!(
        superseding["supersedes"]["id"],
        json!(id(&allowed_original))
    );
    assert_eq!(count(&app, &rejecting).await, 2);
    assert_eq!(count(&app, &allowing).await, 1);
    // The space's own policy still holds for writes without an override.
    assert_duplicate(&create(&app, &rejecting, BASE, json!({})).await, None, None);
}

#[tokio::test]
async fn on_duplicate_in_a_batch_applies_to_its_own_item_only() {
    let app = TestApp::spawn().await;
    let s = space(&app, "REJECT", None).await;
    let stored = created(&app, &s, BASE, json!({})).await;

    let r = batched(
        &app,
        &s,
        json!([
            { "content": OTHER },
            { "content": BASE_RESHAPED, "onDuplicate": "ALLOW" },
            { "content": NEAR, "onDuplicate": "MERGE", "importance": 9 },
        ]),
    )
    .await;
    assert_ne!(id(&r[1]), id(&stored));
    assert!([id(&stored), id(&r[1])].contains(&id(&r[2])));
    assert_eq!(r[2]["importance"], 9);
    assert_eq!(count(&app, &s).await, 3);

    let refused = batch(
        &app,
        &s,
        json!([{ "content": "Something new entirely, about tea" }, { "content": NEAR }]),
    )
    .await;
    assert_duplicate(&refused, None, Some(1));
    assert_eq!(count(&app, &s).await, 3);
}

// ---------------------------------------------------------------------------------------------
// Duplicates inside one createMemories batch: item 2 duplicates item 0

fn batch_with_inner_duplicate() -> Value {
    json!([
        { "content": BASE, "tags": ["x"], "metadata": { "a": 1 }, "importance": 3 },
        { "content": OTHER },
        { "content": BASE_RESHAPED, "tags": ["y"], "metadata": { "b": 2 }, "importance": 7 },
    ])
}

#[tokio::test]
async fn a_batch_under_allow_stores_an_inner_duplicate() {
    let app = TestApp::spawn().await;
    let s = space(&app, "ALLOW", None).await;

    let r = batched(&app, &s, batch_with_inner_duplicate()).await;

    let ids: HashSet<String> = r.iter().map(id).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(count(&app, &s).await, 3);
}

#[tokio::test]
async fn a_batch_under_reject_fails_at_the_inner_duplicate_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let s = space(&app, "REJECT", None).await;

    let exact = batch(&app, &s, batch_with_inner_duplicate()).await;
    let near = batch(
        &app,
        &s,
        json!([{ "content": BASE }, { "content": OTHER }, { "content": NEAR }]),
    )
    .await;

    assert_duplicate(&exact, None, Some(2));
    assert_duplicate(&near, None, Some(2));
    for r in [&exact, &near] {
        assert_eq!(r.error()["extensions"]["duplicateOfIndex"], 0, "{}", r.body);
        assert!(
            r.error()["extensions"]["existingId"].is_null(),
            "{}",
            r.body
        );
    }
    assert_eq!(count(&app, &s).await, 0);
    assert!(listed(&app, &s, true).await.is_empty());
}

#[tokio::test]
async fn a_batch_under_reject_names_a_stored_duplicate_by_id_and_index() {
    let app = TestApp::spawn().await;
    let s = space(&app, "REJECT", None).await;
    let stored = created(&app, &s, BASE, json!({})).await;

    let r = batch(
        &app,
        &s,
        json!([{ "content": OTHER }, { "content": BASE_RESHAPED }]),
    )
    .await;

    assert_duplicate(&r, Some(&id(&stored)), Some(1));
    assert_eq!(count(&app, &s).await, 1);
}

#[tokio::test]
async fn a_batch_under_supersede_links_the_inner_duplicate_to_the_earlier_item() {
    let app = TestApp::spawn().await;
    let s = space(&app, "SUPERSEDE", None).await;

    let r = batched(&app, &s, batch_with_inner_duplicate()).await;

    let (first, other, last) = (id(&r[0]), id(&r[1]), id(&r[2]));
    assert_eq!(
        [&first, &other, &last]
            .into_iter()
            .collect::<HashSet<_>>()
            .len(),
        3
    );
    assert_eq!(r[2]["supersedes"]["id"], json!(first));
    assert_eq!(r[0]["supersededBy"]["id"], json!(last));
    assert_eq!(get(&app, &first).await["supersededBy"]["id"], json!(last));
    assert_eq!(listed(&app, &s, false).await, set([&other, &last]));
    assert_eq!(listed(&app, &s, true).await, set([&first, &other, &last]));
    assert_eq!(count(&app, &s).await, 2);
}

#[tokio::test]
async fn a_batch_under_merge_folds_the_inner_duplicate_into_the_earlier_item() {
    let app = TestApp::spawn().await;
    let s = space(&app, "MERGE", None).await;

    let r = batched(&app, &s, batch_with_inner_duplicate()).await;

    assert_eq!(id(&r[2]), id(&r[0]));
    assert_ne!(id(&r[1]), id(&r[0]));
    let stored = get(&app, &id(&r[0])).await;
    assert_eq!(stored["content"], BASE);
    assert_eq!(stored["tags"], json!(["x", "y"]));
    assert_eq!(stored["metadata"], json!({ "a": 1, "b": 2 }));
    assert_eq!(stored["importance"], 7);
    assert_eq!(r[2]["tags"], stored["tags"]);
    assert_eq!(count(&app, &s).await, 2);
}

// ---------------------------------------------------------------------------------------------
// Versions and optimistic concurrency

#[tokio::test]
async fn a_memory_starts_at_version_1_and_each_change_adds_one() {
    let app = TestApp::spawn().await;
    let s = space(&app, "ALLOW", None).await;
    let m = created(&app, &s, BASE, json!({})).await;
    let m_id = id(&m);

    let v2 = update(&app, &m_id, json!({ "importance": 6 }), None).await;
    let v3 = update(
        &app,
        &m_id,
        json!({ "content": OTHER, "tags": ["a", "b"] }),
        None,
    )
    .await;
    let same = update(&app, &m_id, json!({ "importance": 6 }), None).await;

    assert_eq!(version(&m), 1);
    assert_eq!(version(&v2.data()["updateMemory"]), 2);
    assert_eq!(version(&v3.data()["updateMemory"]), 3);
    assert_eq!(
        version(&same.data()["updateMemory"]),
        3,
        "an update that changes nothing is not a new version"
    );
}

#[tokio::test]
async fn a_stale_expected_version_is_a_conflict_naming_the_current_version() {
    let app = TestApp::spawn().await;
    let s = space(&app, "ALLOW", None).await;
    let m_id = id(&created(&app, &s, BASE, json!({ "importance": 5 })).await);
    update(&app, &m_id, json!({ "importance": 6 }), Some(1))
        .await
        .data();

    let stale = update(&app, &m_id, json!({ "importance": 9 }), Some(1)).await;

    assert_eq!(stale.code(), "CONFLICT", "{}", stale.body);
    assert_eq!(stale.error()["extensions"]["currentVersion"], 2);
    let now = get(&app, &m_id).await;
    assert_eq!((now["importance"].as_i64(), version(&now)), (Some(6), 2));
    let fresh = update(&app, &m_id, json!({ "importance": 9 }), Some(2)).await;
    assert_eq!(version(&fresh.data()["updateMemory"]), 3);
    assert_eq!(fresh.data()["updateMemory"]["importance"], 9);
}

#[tokio::test]
async fn concurrent_updates_from_the_same_version_let_exactly_one_win() {
    let app = TestApp::spawn().await;
    let s = space(&app, "ALLOW", None).await;
    let m_id = id(&created(&app, &s, BASE, json!({})).await);

    let results = join_all((1..=6).map(|i| {
        update(
            &app,
            &m_id,
            json!({ "importance": i, "tags": [format!("t{i}")] }),
            Some(1),
        )
    }))
    .await;

    let winners: Vec<&GqlResponse> = results.iter().filter(|r| r.codes().is_empty()).collect();
    assert_eq!(winners.len(), 1, "{results:#?}");
    for r in results.iter().filter(|r| !r.codes().is_empty()) {
        assert_eq!(r.code(), "CONFLICT", "{}", r.body);
        assert_eq!(r.error()["extensions"]["currentVersion"], 2);
    }
    let now = get(&app, &m_id).await;
    assert_eq!(version(&now), 2);
    assert_eq!(now, winners[0].data()["updateMemory"]);
}

#[tokio::test]
async fn a_merge_is_a_change_that_makes_an_earlier_read_stale() {
    let app = TestApp::spawn().await;
    let s = space(&app, "MERGE", None).await;
    let m = created(&app, &s, BASE, json!({})).await;
    created(&app, &s, BASE_RESHAPED, json!({ "tags": ["merged"] })).await;

    let stale = update(&app, &id(&m), json!({ "importance": 2 }), Some(version(&m))).await;

    assert_eq!(stale.code(), "CONFLICT");
    assert_eq!(stale.error()["extensions"]["currentVersion"], 2);
}

// ---------------------------------------------------------------------------------------------
// externalId: writes are idempotent

#[tokio::test]
async fn writing_an_existing_external_id_returns_the_existing_memory_unchanged() {
    let app = TestApp::spawn().await;
    let s = space(&app, "ALLOW", None).await;
    let first = created(
        &app,
        &s,
        "Customer 42 prefers email over phone",
        json!({ "externalId": "crm-42", "tags": ["crm"] }),
    )
    .await;

    let again = created(
        &app,
        &s,
        "Something else entirely",
        json!({ "externalId": "crm-42", "tags": ["other"], "importance": 9 }),
    )
    .await;

    assert_eq!(again, first);
    assert_eq!(first["externalId"], "crm-42");
    assert_eq!(get(&app, &id(&first)).await, first);
    assert_eq!(count(&app, &s).await, 1);
}

#[tokio::test]
async fn external_ids_are_idempotent_within_a_batch_and_across_batches() {
    let app = TestApp::spawn().await;
    let s = space(&app, "ALLOW", None).await;
    let stored = created(&app, &s, "line one", json!({ "externalId": "1" })).await;

    let r = batched(
        &app,
        &s,
        json!([
            { "content": "line one, changed", "externalId": "1" },
            { "content": "line two", "externalId": "2" },
            { "content": "line two again", "externalId": "2" },
        ]),
    )
    .await;

    assert_eq!(id(&r[0]), id(&stored));
    assert_eq!(r[0]["content"], "line one");
    assert_eq!(id(&r[2]), id(&r[1]));
    assert_eq!(r[2]["content"], "line two");
    assert_eq!(count(&app, &s).await, 2);
}

#[tokio::test]
async fn a_known_external_id_wins_over_the_duplicate_policy() {
    let app = TestApp::spawn().await;
    let s = space(&app, "REJECT", None).await;
    let first = created(&app, &s, BASE, json!({ "externalId": "line-1" })).await;

    // A re-run import sends the same line again: it is the same memory, not a duplicate.
    let rerun = created(&app, &s, BASE, json!({ "externalId": "line-1" })).await;

    assert_eq!(rerun, first);
}

#[tokio::test]
async fn the_same_external_id_in_another_space_is_another_memory() {
    let app = TestApp::spawn().await;
    let a = space(&app, "ALLOW", None).await;
    let b = space(&app, "ALLOW", None).await;

    let in_a = created(&app, &a, "shared line", json!({ "externalId": "x-1" })).await;
    let in_b = created(&app, &b, "shared line", json!({ "externalId": "x-1" })).await;

    assert_ne!(id(&in_a), id(&in_b));
}

#[tokio::test]
async fn concurrent_writes_with_one_external_id_make_one_memory() {
    let app = TestApp::spawn().await;
    let s = space(&app, "ALLOW", None).await;

    let singles = (0..4).map(|i| {
        let app = &app;
        let s = s.clone();
        async move {
            let r = create(
                app,
                &s,
                &format!("racer {i}"),
                json!({ "externalId": "job-7" }),
            )
            .await;
            r.data()["createMemory"]["id"].as_str().map(str::to_string)
        }
    });
    let batches = (0..4).map(|i| {
        let app = &app;
        let s = s.clone();
        async move {
            let r = batch(
                app,
                &s,
                json!([{ "content": format!("batch racer {i}"), "externalId": "job-7" }]),
            )
            .await;
            r.data()["createMemories"][0]["id"]
                .as_str()
                .map(str::to_string)
        }
    });
    let (a, b) = futures::join!(join_all(singles), join_all(batches));

    let ids: HashSet<Option<String>> = a.into_iter().chain(b).collect();
    assert_eq!(ids.len(), 1, "every write returns the one memory: {ids:?}");
    assert_eq!(count(&app, &s).await, 1);
}

// ---------------------------------------------------------------------------------------------
// Concurrent duplicates: writers of one space see each other's memories

/// Writes `contents` to the space all at once, one `createMemory` each.
async fn race(app: &TestApp, space_id: &str, contents: &[&str], extra: Value) -> Vec<GqlResponse> {
    join_all(
        contents
            .iter()
            .map(|c| create(app, space_id, c, extra.clone())),
    )
    .await
}

#[tokio::test]
async fn concurrent_near_duplicates_under_reject_store_exactly_one() {
    let app = TestApp::spawn().await;
    let texts = [BASE, NEAR, EDGE_HIGH, EDGE_LOW, BASE_RESHAPED];
    for a in texts {
        for b in texts {
            assert!(cosine(a, b) >= 0.9, "{a:?} ~ {b:?}: {}", cosine(a, b));
        }
    }
    let s = space(&app, "REJECT", Some(0.9)).await;

    let results = race(&app, &s, &texts, json!({})).await;

    let stored: Vec<&GqlResponse> = results.iter().filter(|r| r.codes().is_empty()).collect();
    assert_eq!(stored.len(), 1, "{results:#?}");
    let winner = id(&stored[0].data()["createMemory"]);
    for r in results.iter().filter(|r| !r.codes().is_empty()) {
        assert_duplicate(r, Some(&winner), None);
    }
    assert_eq!(count(&app, &s).await, 1);
}

#[tokio::test]
async fn concurrent_duplicates_under_merge_end_as_one_memory_with_every_tag() {
    let app = TestApp::spawn().await;
    let s = space(&app, "MERGE", None).await;

    let results = join_all((0..6).map(|i| {
        create(
            &app,
            &s,
            if i % 2 == 0 { BASE } else { BASE_RESHAPED },
            json!({ "tags": [format!("t{i}")] }),
        )
    }))
    .await;

    let ids: HashSet<String> = results
        .iter()
        .map(|r| id(&r.data()["createMemory"]))
        .collect();
    assert_eq!(ids.len(), 1, "{results:#?}");
    let m = get(&app, ids.iter().next().unwrap()).await;
    assert_eq!(m["tags"], json!(["t0", "t1", "t2", "t3", "t4", "t5"]));
    assert_eq!(version(&m), 6);
    assert_eq!(count(&app, &s).await, 1);
}

#[tokio::test]
async fn concurrent_duplicates_under_supersede_leave_one_live_memory_at_the_end_of_one_chain() {
    let app = TestApp::spawn().await;
    let s = space(&app, "SUPERSEDE", None).await;

    let results = race(
        &app,
        &s,
        &[BASE, NEAR, BASE_RESHAPED, NEAR, BASE],
        json!({}),
    )
    .await;

    let ids: Vec<String> = results
        .iter()
        .map(|r| id(&r.data()["createMemory"]))
        .collect();
    assert_eq!(listed(&app, &s, true).await.len(), 5);
    let live = listed(&app, &s, false).await;
    assert_eq!(live.len(), 1, "one live memory: {live:?}");
    // Walk back from the live one: every memory is on the chain exactly once.
    let mut seen = HashSet::new();
    let mut at = live.into_iter().next();
    while let Some(m_id) = at {
        assert!(seen.insert(m_id.clone()), "a cycle at {m_id}");
        at = get(&app, &m_id).await["supersedes"]["id"]
            .as_str()
            .map(str::to_string);
    }
    assert_eq!(seen, ids.into_iter().collect::<HashSet<_>>());
}

// ---------------------------------------------------------------------------------------------
// Memory counters under each policy: `memoryCount`/`usedStorage` (counters on the space row)
// must equal what the memories list holds after every write.

/// `Space.memoryCount` and `Space.usedStorage`.
async fn usage(app: &TestApp, space_id: &str) -> (i64, i64) {
    let r = app
        .gql(
            "query($s:ID!){ space(id:$s){ memoryCount usedStorage } }",
            json!({ "s": space_id }),
        )
        .await;
    let s = &r.data()["space"];
    (
        s["memoryCount"].as_i64().expect("memoryCount"),
        s["usedStorage"].as_i64().expect("usedStorage"),
    )
}

/// Asserts that `memoryCount`/`usedStorage`, on the space and on the spaces page, equal the
/// count and content bytes of the listed memories; returns them.
async fn assert_usage_is_listed(app: &TestApp, space_id: &str) -> (i64, i64) {
    let r = app
        .gql(
            "query($s:ID!){ space(id:$s){ memories(first:1000){ edges{ node{ content } } } } \
               spaces(first:50){ edges{ node{ id memoryCount usedStorage } } } }",
            json!({ "s": space_id }),
        )
        .await;
    let contents: Vec<String> = r.data()["space"]["memories"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["content"].as_str().expect("content").to_string())
        .collect();
    let listed = (
        contents.len() as i64,
        contents.iter().map(|c| c.len() as i64).sum(),
    );
    let paged = r.data()["spaces"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| &e["node"])
        .find(|n| n["id"] == space_id)
        .map(|n| (n["memoryCount"].as_i64(), n["usedStorage"].as_i64()));
    assert_eq!(paged, Some((Some(listed.0), Some(listed.1))), "spaces page");
    assert_eq!(usage(app, space_id).await, listed, "space(id)");
    listed
}

fn bytes(texts: &[&str]) -> i64 {
    texts.iter().map(|t| t.len() as i64).sum()
}

#[tokio::test]
async fn supersede_keeps_the_memory_count_and_counts_the_new_contents_bytes() {
    let app = TestApp::spawn().await;
    let s = space(&app, "SUPERSEDE", None).await;
    created(&app, &s, BASE, json!({})).await;
    created(&app, &s, OTHER, json!({})).await;
    assert_eq!(
        assert_usage_is_listed(&app, &s).await,
        (2, bytes(&[BASE, OTHER]))
    );

    created(&app, &s, BASE_RESHAPED, json!({})).await;
    assert_eq!(
        assert_usage_is_listed(&app, &s).await,
        (2, bytes(&[BASE_RESHAPED, OTHER]))
    );

    created(&app, &s, NEAR, json!({})).await;
    assert_eq!(
        assert_usage_is_listed(&app, &s).await,
        (2, bytes(&[NEAR, OTHER]))
    );
}

#[tokio::test]
async fn merge_keeps_the_memory_count_and_the_bytes_of_the_memory_merged_into() {
    let app = TestApp::spawn().await;
    let s = space(&app, "MERGE", None).await;
    let first = created(&app, &s, BASE, json!({ "tags": ["a"] })).await;

    let merged = created(&app, &s, BASE_RESHAPED, json!({ "tags": ["b"] })).await;
    let near = created(&app, &s, NEAR, json!({ "metadata": { "k": "v" } })).await;

    assert_eq!(id(&merged), id(&first));
    assert_eq!(id(&near), id(&first));
    assert_eq!(assert_usage_is_listed(&app, &s).await, (1, bytes(&[BASE])));
}

#[tokio::test]
async fn reject_leaves_the_memory_count_and_bytes_unchanged() {
    let app = TestApp::spawn().await;
    let s = space(&app, "REJECT", None).await;
    created(&app, &s, BASE, json!({})).await;

    let exact = create(&app, &s, BASE_RESHAPED, json!({})).await;
    let near = create(&app, &s, NEAR, json!({})).await;

    assert_eq!(exact.code(), "DUPLICATE");
    assert_eq!(near.code(), "DUPLICATE");
    assert_eq!(assert_usage_is_listed(&app, &s).await, (1, bytes(&[BASE])));
}

#[tokio::test]
async fn a_batch_under_supersede_or_merge_counts_each_inner_duplicate_once() {
    let app = TestApp::spawn().await;
    let superseding = space(&app, "SUPERSEDE", None).await;
    let merging = space(&app, "MERGE", None).await;

    batched(&app, &superseding, batch_with_inner_duplicate()).await;
    batched(&app, &merging, batch_with_inner_duplicate()).await;

    assert_eq!(
        assert_usage_is_listed(&app, &superseding).await,
        (2, bytes(&[BASE_RESHAPED, OTHER]))
    );
    assert_eq!(
        assert_usage_is_listed(&app, &merging).await,
        (2, bytes(&[BASE, OTHER]))
    );

    // A second batch superseding (merging into) the stored memories, twice over.
    let again = json!([{ "content": NEAR }, { "content": BASE }, { "content": FAR }]);
    batched(&app, &superseding, again.clone()).await;
    batched(&app, &merging, again).await;

    let superseded = assert_usage_is_listed(&app, &superseding).await;
    assert_eq!(
        superseded.0,
        listed(&app, &superseding, false).await.len() as i64
    );
    let merged = assert_usage_is_listed(&app, &merging).await;
    assert_eq!(merged.0, listed(&app, &merging, false).await.len() as i64);
}

#[tokio::test]
async fn a_batch_rejected_at_its_last_item_leaves_the_memory_counts_unchanged() {
    let app = TestApp::spawn().await;
    let s = space(&app, "REJECT", None).await;
    created(&app, &s, BASE, json!({})).await;
    let before = assert_usage_is_listed(&app, &s).await;

    // The first two items are new: the failure comes inside the write's transaction.
    let r = batch(
        &app,
        &s,
        json!([{ "content": OTHER }, { "content": FAR, "onDuplicate": "ALLOW" }, { "content": BASE_RESHAPED }]),
    )
    .await;

    assert_duplicate(&r, None, Some(2));
    assert_eq!(assert_usage_is_listed(&app, &s).await, before);
}

#[tokio::test]
async fn editing_or_deleting_a_superseded_memory_leaves_the_memory_counts_alone() {
    let app = TestApp::spawn().await;
    let s = space(&app, "SUPERSEDE", None).await;
    let old = created(&app, &s, BASE, json!({})).await;
    created(&app, &s, BASE_RESHAPED, json!({})).await;
    let before = assert_usage_is_listed(&app, &s).await;

    update(
        &app,
        &id(&old),
        json!({ "content": "a much longer text than before, é" }),
        None,
    )
    .await
    .data();
    assert_eq!(assert_usage_is_listed(&app, &s).await, before);
    app.gql(
        "mutation($id:ID!){ deleteMemory(id:$id) }",
        json!({ "id": id(&old) }),
    )
    .await
    .data();
    assert_eq!(assert_usage_is_listed(&app, &s).await, before);
}

#[tokio::test]
async fn an_existing_external_id_changes_no_memory_count() {
    let app = TestApp::spawn().await;
    let s = space(&app, "ALLOW", None).await;
    created(&app, &s, BASE, json!({ "externalId": "ext-1" })).await;

    created(&app, &s, OTHER, json!({ "externalId": "ext-1" })).await;
    batched(
        &app,
        &s,
        json!([{ "content": FAR, "externalId": "ext-1" }, { "content": NEAR, "externalId": "ext-2" }]),
    )
    .await;

    assert_eq!(
        assert_usage_is_listed(&app, &s).await,
        (2, bytes(&[BASE, NEAR]))
    );
}

#[tokio::test]
async fn concurrent_duplicates_under_supersede_or_merge_keep_exact_memory_counts() {
    let app = TestApp::spawn().await;
    let superseding = space(&app, "SUPERSEDE", None).await;
    let merging = space(&app, "MERGE", None).await;
    let texts = [BASE, NEAR, BASE_RESHAPED, NEAR, BASE, OTHER, OTHER, BASE];

    let (a, b) = futures::future::join(
        race(&app, &superseding, &texts, json!({})),
        race(&app, &merging, &texts, json!({})),
    )
    .await;

    for r in a.iter().chain(&b) {
        r.data();
    }
    assert_eq!(assert_usage_is_listed(&app, &superseding).await.0, 2);
    assert_eq!(assert_usage_is_listed(&app, &merging).await.0, 2);
}
