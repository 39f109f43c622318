//! The pgvector vector store (`--vector-store`): SEMANTIC search in PostgreSQL. These tests
//! need a database with the extension (`scripts/pgvector-postgres start`); elsewhere they print
//! a note and pass, unless MEMSPACE_REQUIRE_PGVECTOR=1 (as in CI's pgvector lane) makes that a
//! failure. The start-up error test runs on every lane.
use std::collections::HashSet;
use std::time::{Duration, Instant};

use memspace::config::VectorStore;
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};

const WORDS: &[&str] = &[
    "harbor", "lantern", "copper", "meadow", "glacier", "violin", "orchard", "compass", "ember",
    "falcon", "granite", "horizon", "island", "jasmine", "kettle", "lagoon", "marble", "nectar",
    "oasis", "pepper", "quartz", "river", "saffron", "thunder", "umbrella", "velvet", "willow",
    "yarrow", "zephyr", "anchor", "beacon", "canyon", "dune", "estuary", "fjord", "grove",
];

/// A deterministic text: "harbor" (so that every text and query share a word and score above
/// zero) and `n` words for item `i`.
fn text(i: usize, n: usize) -> String {
    format!("harbor {}", words(i, n))
}

fn words(i: usize, n: usize) -> String {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            WORDS[(x % WORDS.len() as u64) as usize]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A server on pgvector, or None (with a note) when the database has no pgvector and it is
/// not required.
async fn pgvector_app(
    test: &str,
    configure: impl FnOnce(&mut memspace::Config),
) -> Option<TestApp> {
    let app = TestApp::spawn_with(|c| {
        c.vector_store.mode = VectorStore::Auto;
        configure(c)
    })
    .await;
    if app.index.pgvector().is_some() {
        return Some(app);
    }
    if std::env::var("MEMSPACE_REQUIRE_PGVECTOR").is_ok_and(|v| v == "1") {
        panic!("{test}: MEMSPACE_REQUIRE_PGVECTOR=1 but the test database has no pgvector");
    }
    eprintln!(
        "note: {test} skipped: TEST_DATABASE_URL has no pgvector (scripts/pgvector-postgres start)"
    );
    None
}

fn hits(r: &GqlResponse) -> Vec<(String, f64)> {
    r.data()["searchMemories"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {}", r.body))
        .iter()
        .map(|h| {
            (
                h["memory"]["id"].as_str().unwrap().to_string(),
                h["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

async fn semantic(app: &TestApp, key: &str, query: &str, extra: Value) -> GqlResponse {
    let mut input = json!({ "query": query, "mode": "SEMANTIC", "limit": 10 });
    if let (Some(obj), Some(more)) = (input.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    app.search_as(key, input).await
}

/// `createMemories` of `contents` with `extra` fields on each; the ids.
async fn write(app: &TestApp, space: &str, contents: &[String], extra: Value) -> Vec<String> {
    let inputs: Vec<Value> = contents
        .iter()
        .map(|c| {
            let mut m = json!({ "content": c });
            if let (Some(obj), Some(more)) = (m.as_object_mut(), extra.as_object()) {
                for (k, v) in more {
                    obj.insert(k.clone(), v.clone());
                }
            }
            m
        })
        .collect();
    let r = app
        .gql(
            "mutation($s:ID!,$i:[MemoryInput!]!){ createMemories(spaceId:$s,inputs:$i){ id } }",
            json!({ "s": space, "i": inputs }),
        )
        .await;
    r.data()["createMemories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

fn uuid(id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(id).unwrap()
}

/// The same hits with the same scores within f16 rounding (the in-process index holds the
/// vectors as f16, pgvector rescores from the f32 blob), so near-ties may trade places.
fn assert_same(got: &[(String, f64)], want: &[(String, f64)], what: &str) {
    let want_scores: std::collections::HashMap<&str, f64> =
        want.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (id, a) in got {
        let Some(b) = want_scores.get(id.as_str()) else {
            panic!("{what}: {id} is not among {want:?}");
        };
        assert!((a - b).abs() < 1e-3, "{what}: score {a} vs {b}");
    }
}

#[tokio::test]
async fn semantic_search_on_pgvector_returns_the_same_top_results_as_the_in_process_index() {
    let Some(pg) = pgvector_app("same_top_results", |_| {}).await else {
        return;
    };
    let key = pg.admin_key.clone();
    let space = pg.space_as(&key, "corpus", json!({})).await;
    let contents: Vec<String> = (0..150).map(|i| text(i, 12)).collect();
    write(&pg, &space, &contents, json!({})).await;
    let memory = pg
        .reopen(|c| c.vector_store.mode = VectorStore::Memory)
        .await;
    assert!(memory.index.pgvector().is_none());

    for q in 0..12 {
        let query = text(10_000 + q, 4);
        let want = hits(&semantic(&memory, &key, &query, json!({ "spaceIds": [space] })).await);
        let got = hits(&semantic(&pg, &key, &query, json!({ "spaceIds": [space] })).await);
        assert_eq!(want.len(), 10);
        assert_same(&got, &want, &format!("query {query:?}"));
    }

    assert_eq!(
        pg.index.memories_of(uuid(&space)).await,
        None,
        "no vectors in the pgvector server's RAM"
    );
    assert_eq!(memory.index.memories_of(uuid(&space)).await, Some(150));
}

/// Creates `n` spaces in aliased batches; their ids.
async fn spaces(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(100) {
        let end = (start + 100).min(n);
        let body: String = (start..end)
            .map(|i| format!("s{i}: createSpace(input:{{name:\"{prefix}-{i}\"}}){{ id }} "))
            .collect();
        let r = app.gql(&format!("mutation {{ {body} }}"), json!({})).await;
        for i in start..end {
            ids.push(
                r.data()[format!("s{i}")]["id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    ids
}

#[tokio::test]
async fn a_selective_filter_among_1000_spaces_still_returns_its_k_nearest_memories() {
    let _heavy = crate::common::HEAVY.lock().await;
    let Some(pg) = pgvector_app("selective_filter", |_| {}).await else {
        return;
    };
    let key = pg.admin_key.clone();
    let all = spaces(&pg, "s", 1000).await;
    // Four big spaces hold 8,000 memories; the small one 12, tagged.
    for (b, space) in all.iter().take(4).enumerate() {
        for part in 0..2 {
            let contents: Vec<String> = (0..1000)
                .map(|i| text(100_000 + b * 10_000 + part * 1000 + i, 12))
                .collect();
            write(&pg, space, &contents, json!({})).await;
        }
    }
    let small = all[999].clone();
    let contents: Vec<String> = (0..12).map(|i| text(500 + i, 12)).collect();
    let needles: HashSet<String> = write(&pg, &small, &contents, json!({ "tags": ["needle"] }))
        .await
        .into_iter()
        .collect();
    // The in-process index scans a 12-memory space exactly: the reference answer.
    let memory = pg
        .reopen(|c| c.vector_store.mode = VectorStore::Memory)
        .await;

    for q in 0..5 {
        let query = text(20_000 + q, 4);
        let want = hits(&semantic(&memory, &key, &query, json!({ "spaceIds": [small] })).await);
        assert_eq!(want.len(), 10);
        let by_space = hits(&semantic(&pg, &key, &query, json!({ "spaceIds": [small] })).await);
        let by_tag = hits(
            &semantic(
                &pg,
                &key,
                &query,
                json!({ "filter": { "tags": ["needle"] } }),
            )
            .await,
        );
        assert_same(&by_space, &want, &format!("spaceIds, query {query:?}"));
        assert_same(
            &by_tag,
            &want,
            &format!("tag filter over 1,000 spaces, query {query:?}"),
        );
        assert!(by_tag.iter().all(|(id, _)| needles.contains(id)));
    }
}

#[tokio::test]
async fn a_write_on_server_a_is_found_by_a_semantic_search_on_server_b_right_after_its_response() {
    let Some(a) = pgvector_app("write_on_a_found_on_b", |_| {}).await else {
        return;
    };
    let b = a.reopen(|c| c.vector_store.mode = VectorStore::Auto).await;
    let key = a.admin_key.clone();
    let space = a.space_as(&key, "shared", json!({})).await;
    write(
        &a,
        &space,
        &(0..40).map(|i| text(i, 12)).collect::<Vec<_>>(),
        json!({}),
    )
    .await;
    let input = json!({ "spaceIds": [space] });
    // B has searched the space before the write: nothing it holds may hide the new memory.
    assert_eq!(
        hits(&semantic(&b, &key, "violin glacier", input.clone()).await).len(),
        10
    );

    for i in 0..5 {
        let content = format!("saffron thunder lagoon quartz number {i}");
        let id = a.memory_as(&key, &space, &content, json!({})).await;
        let found = hits(&semantic(&b, &key, &content, input.clone()).await);
        assert_eq!(found[0].0, id, "write {i} is B's best hit at once");
        assert!((found[0].1 - 1.0).abs() < 1e-4);
    }
    assert_eq!(b.index.memories_of(uuid(&space)).await, None);
}

#[tokio::test]
async fn on_pgvector_a_principal_never_gets_a_memory_outside_its_scope() {
    let Some(app) = pgvector_app("scope", |_| {}).await else {
        return;
    };
    let admin = app.admin_key.clone();
    let (user, key) = app.user("reader", false).await;
    let readable = app.space_as(&admin, "readable", json!({})).await;
    let private = app.space_as(&admin, "private", json!({})).await;
    let shared = app
        .share_as(
            &admin,
            &readable,
            json!([{ "subjectKind": "USER", "subjectId": user, "permission": "VIEW" }]),
        )
        .await;
    shared.data();
    let query = "copper lantern harbor meadow";
    let mine: HashSet<String> = write(
        &app,
        &readable,
        &(0..20).map(|i| text(i, 12)).collect::<Vec<_>>(),
        json!({}),
    )
    .await
    .into_iter()
    .collect();
    // The private space holds the query itself and its near copies: the closest memories.
    let contents: Vec<String> = (0..20).map(|i| format!("{query} {}", WORDS[i])).collect();
    let theirs = write(&app, &private, &contents, json!({})).await;

    let everything = hits(&semantic(&app, &key, query, json!({ "limit": 100 })).await);
    let as_admin = hits(&semantic(&app, &admin, query, json!({})).await);
    let named = semantic(&app, &key, query, json!({ "spaceIds": [private] })).await;

    assert_eq!(everything.len(), 20);
    assert!(everything.iter().all(|(id, _)| mine.contains(id)));
    assert!(
        as_admin.iter().all(|(id, _)| theirs.contains(id)),
        "the admin sees the closest"
    );
    assert_eq!(named.code(), "NOT_FOUND");
}

#[tokio::test]
async fn an_existing_database_is_backfilled_in_the_background_then_searched_in_sql() {
    if pgvector_app("backfill", |_| {}).await.is_none() {
        return;
    }
    let before = TestApp::spawn_with(|c| c.vector_store.mode = VectorStore::Memory).await;
    let key = before.admin_key.clone();
    let space = before.space_as(&key, "old", json!({})).await;
    write(
        &before,
        &space,
        &(0..300).map(|i| text(i, 12)).collect::<Vec<_>>(),
        json!({}),
    )
    .await;
    let query = text(77_777, 4);
    let want = hits(&semantic(&before, &key, &query, json!({ "spaceIds": [space] })).await);

    // Forced to the background path (a big table's), as on a database with millions of chunks.
    let after = before
        .reopen(|c| {
            c.vector_store.mode = VectorStore::Pgvector;
            c.vector_store.startup_migration_max = 0;
        })
        .await;
    let during = hits(&semantic(&after, &key, &query, json!({ "spaceIds": [space] })).await);
    let store = after.index.pgvector().expect("pgvector store").clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !store.is_switched() {
        assert!(Instant::now() < deadline, "migration not done within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let switched = hits(&semantic(&after, &key, &query, json!({ "spaceIds": [space] })).await);
    let unfilled = after
        .db
        .read
        .query_one(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM chunks WHERE embedding_half IS NULL",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    let index_valid = after
        .db
        .read
        .query_one(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT bool_and(i.indisvalid) AS ok, count(*) AS n FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'ix_chunks_halfvec_384' \
             AND i.indrelid = 'chunks'::regclass",
        ))
        .await
        .unwrap()
        .unwrap();

    assert_same(&during, &want, "served in-process while migrating");
    assert_same(&switched, &want, "served by SQL after the switch");
    assert_eq!(unfilled, 0);
    assert_eq!(index_valid.try_get::<i64>("", "n").unwrap(), 1);
    assert!(index_valid.try_get::<bool>("", "ok").unwrap());
    assert_eq!(
        after.index.memories_of(uuid(&space)).await,
        None,
        "vectors let go"
    );
}

/// Whether the test database offers the extension (checked directly, not through the server).
async fn database_offers_pgvector() -> bool {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        return false;
    };
    if base.is_empty() {
        return false;
    }
    let conn = sea_orm::Database::connect(&base).await.expect("connect");
    let row = conn
        .query_one(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_available_extensions WHERE name = 'vector'",
        ))
        .await
        .expect("query")
        .expect("row");
    conn.close().await.ok();
    row.try_get::<i64>("", "n").unwrap() > 0
}

#[tokio::test]
async fn vector_store_pgvector_without_the_extension_is_a_clear_start_up_error() {
    let available = database_offers_pgvector().await;
    let url = match std::env::var("TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            // A schema of its own, as the harness makes.
            let app = TestApp::spawn_with(|c| c.vector_store.mode = VectorStore::Memory).await;
            app.database_url.clone()
        }
        _ => "sqlite::memory:".to_string(),
    };
    let mut config = memspace::Config::new(url);
    config.vector_store.mode = VectorStore::Pgvector;

    let built = memspace::build(&config).await;

    match built {
        Ok(app) => {
            assert!(available, "built on a database without pgvector");
            assert!(app.index.pgvector().is_some());
        }
        Err(e) => {
            let message = format!("{e:#}");
            assert!(!available, "pgvector is available, yet: {message}");
            assert!(message.contains("--vector-store pgvector"), "{message}");
            assert!(message.contains("pgvector"), "{message}");
        }
    }
}

#[tokio::test]
async fn a_scope_of_most_spaces_skips_the_space_condition_and_still_returns_its_k_nearest() {
    let Some(app) = pgvector_app("most_spaces", |_| {}).await else {
        return;
    };
    let admin = app.admin_key.clone();
    let (user, key) = app.user("reader", false).await;
    let query = "copper lantern harbor meadow";
    let mut mine = HashSet::new();
    for s in 0..3 {
        let space = app
            .space_as(&admin, &format!("shared {s}"), json!({}))
            .await;
        app.share_as(
            &admin,
            &space,
            json!([{ "subjectKind": "USER", "subjectId": user, "permission": "VIEW" }]),
        )
        .await
        .data();
        let contents: Vec<String> = (0..15).map(|i| text(s * 100 + i, 12)).collect();
        mine.extend(write(&app, &space, &contents, json!({})).await);
    }
    // Three of four spaces are the reader's scope (searched with no space condition in SQL);
    // the fourth holds the 300 memories nearest to the query, all to be dropped.
    let private = app.space_as(&admin, "private", json!({})).await;
    let contents: Vec<String> = (0..300)
        .map(|i| format!("{query} {} {}", WORDS[i % WORDS.len()], i))
        .collect();
    write(&app, &private, &contents, json!({})).await;
    let memory = app
        .reopen(|c| c.vector_store.mode = VectorStore::Memory)
        .await;

    for q in [query, "harbor violin", "meadow glacier copper"] {
        let got = hits(&semantic(&app, &key, q, json!({})).await);
        let want = hits(&semantic(&memory, &key, q, json!({})).await);
        assert_eq!(
            got.len(),
            10,
            "{q}: k hits despite the nearer rows out of scope"
        );
        assert!(
            got.iter().all(|(id, _)| mine.contains(id)),
            "{q}: out of scope"
        );
        assert_same(&got, &want, &format!("query {q:?}"));
    }
}

/// Every chunk's `embedding_half` as text, by chunk id.
async fn halves(app: &TestApp) -> Vec<(String, Option<String>)> {
    app.db
        .read
        .query_all(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT id::text AS id, embedding_half::text AS half, embedding_dim AS dim \
             FROM chunks ORDER BY id",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r.try_get::<i32>("", "dim").unwrap(), 384);
            (
                r.try_get::<String>("", "id").unwrap(),
                r.try_get::<Option<String>>("", "half").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_half_vectors_the_server_writes_are_the_trigger_s_decoding_of_the_blobs() {
    let Some(app) = pgvector_app("half vectors", |_| {}).await else {
        return;
    };
    let key = app.admin_key.clone();
    let space = app.space_as(&key, "halves", json!({})).await;
    let ids = write(
        &app,
        &space,
        &(0..40).map(|i| text(i, 12)).collect::<Vec<_>>(),
        json!({}),
    )
    .await;
    let before_update = halves(&app).await;
    let r = app
        .gql(
            "mutation($id:ID!){ updateMemory(id:$id, input:{content:\"glacier violin ember\"}){ id } }",
            json!({ "id": ids[3] }),
        )
        .await;
    r.data();
    let sent = halves(&app).await;
    assert_eq!(sent.len(), 40);
    assert!(
        sent.iter().all(|(_, h)| h.is_some()),
        "every chunk has its half vector"
    );
    assert_ne!(
        sent, before_update,
        "the update wrote the new content's vector"
    );

    // Rewriting every blob makes the trigger decode it again: the same half vectors.
    app.db
        .write
        .execute_unprepared("UPDATE chunks SET embedding = embedding")
        .await
        .unwrap();
    assert_eq!(halves(&app).await, sent);

    // A writer that sends only the blob (an older binary) still gets its half vector.
    app.db
        .write
        .execute_unprepared(
            "UPDATE chunks SET embedding_half = NULL, embedding_dim = NULL; \
             UPDATE chunks SET embedding = embedding",
        )
        .await
        .unwrap();
    assert_eq!(halves(&app).await, sent);
    let hit = hits(&semantic(&app, &key, "glacier violin ember", json!({})).await);
    assert_eq!(hit[0].0, ids[3]);
}
