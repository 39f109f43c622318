//! Embedders: a remote OpenAI-compatible embedder against a fake embeddings API started by the
//! test (batching, model and key, retries and backoff, timeouts, dimension and count checks,
//! all-or-nothing writes, search while it is down), the `embedders` query, the configured
//! default, and the choice of embedder at `createSpace`.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use memspace::config::{EmbedderConfig, RemoteEmbedder};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};

const REMOTE: &str = "fake-openai";
const MODEL: &str = "text-embedding-fake-1";
const API_KEY: &str = "sk-test-embeddings-key";
const BUILTIN: &str = "builtin-hash-384";
const NEURAL: &str = "minilm-l6-v2";

// ---------------------------------------------------------------------------------------------
// The fake embeddings API

/// What the fake API does with a request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// One bag-of-words vector per text, of the current dimension, listed in reverse order with
    /// their `index` (so a server that ignored `index` would mix memories up).
    Vectors,
    /// Waits this long, then answers with vectors.
    Stall(Duration),
    /// This HTTP status with an OpenAI-style error body.
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    RateLimited(u64),
    /// Vectors, plus one embedding more than texts sent.
    ExtraEmbedding,
}

/// One request the fake API received.
#[derive(Clone, Debug)]
struct Seen {
    model: String,
    authorization: Option<String>,
    input: Vec<String>,
    at: Instant,
}

struct FakeState {
    dimension: usize,
    /// Replies for the next requests, in order; then `otherwise`.
    queued: VecDeque<Reply>,
    otherwise: Reply,
    seen: Vec<Seen>,
}

/// An OpenAI-compatible `POST /v1/embeddings` on 127.0.0.1, with switchable behaviour.
struct FakeApi {
    base_url: String,
    state: Arc<Mutex<FakeState>>,
}

impl FakeApi {
    async fn start(dimension: usize) -> FakeApi {
        let state = Arc::new(Mutex::new(FakeState {
            dimension,
            queued: VecDeque::new(),
            otherwise: Reply::Vectors,
            seen: Vec::new(),
        }));
        let router = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            axum::serve(listener, router).await.ok();
        });
        FakeApi {
            base_url: format!("http://{addr}/v1"),
            state,
        }
    }

    /// The server-side configuration of this API, with its key.
    fn spec(&self, name: &str) -> RemoteEmbedder {
        let mut spec = RemoteEmbedder::parse(&format!("{name}=openai:{MODEL}@{}", self.base_url))
            .expect("valid embedder spec");
        spec.api_key = Some(API_KEY.to_string());
        spec
    }

    /// Every request from now on gets `reply`.
    fn always(&self, reply: Reply) {
        self.then(&[], reply);
    }

    /// The next requests get `replies` in order, the ones after them `otherwise`.
    fn then(&self, replies: &[Reply], otherwise: Reply) {
        let mut s = self.state.lock().unwrap();
        s.queued = replies.iter().copied().collect();
        s.otherwise = otherwise;
    }

    fn set_dimension(&self, dimension: usize) {
        self.state.lock().unwrap().dimension = dimension;
    }

    /// The requests received since the last call.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut self.state.lock().unwrap().seen)
    }
}

async fn embeddings(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let input: Vec<String> = body["input"]
        .as_array()
        .map(|texts| {
            texts
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let (reply, dimension) = {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen {
            model: body["model"].as_str().unwrap_or("").to_string(),
            authorization: headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            input: input.clone(),
            at: Instant::now(),
        });
        let reply = s.queued.pop_front().unwrap_or(s.otherwise);
        (reply, s.dimension)
    };
    let error = |status: StatusCode, message: &str| {
        (
            status,
            Json(json!({ "error": { "message": message, "type": "fake" } })),
        )
    };
    match reply {
        Reply::Vectors => answer(&input, dimension, 0),
        Reply::ExtraEmbedding => answer(&input, dimension, 1),
        Reply::Stall(d) => {
            tokio::time::sleep(d).await;
            answer(&input, dimension, 0)
        }
        Reply::Status(code) => error(
            StatusCode::from_u16(code).expect("valid status"),
            "fake failure",
        )
        .into_response(),
        Reply::RateLimited(seconds) => {
            let (status, body) = error(StatusCode::TOO_MANY_REQUESTS, "slow down");
            (status, [(header::RETRY_AFTER, seconds.to_string())], body).into_response()
        }
    }
}

/// OpenAI's answer shape, items in reverse order, `extra` items more than texts.
fn answer(input: &[String], dimension: usize, extra: usize) -> Response {
    let data: Vec<Value> = (0..input.len() + extra)
        .rev()
        .map(|i| {
            let text = input.get(i).map_or("extra", String::as_str);
            json!({ "object": "embedding", "index": i, "embedding": bag_of_words(text, dimension) })
        })
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": MODEL,
        "usage": { "prompt_tokens": 1, "total_tokens": 1 },
    }))
    .into_response()
}

/// Each lower-cased word adds 1 to a hashed dimension: texts sharing words are near each other.
fn bag_of_words(text: &str, dimension: usize) -> Vec<f32> {
    let mut v = vec![0f32; dimension];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
    {
        let h = word
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        v[(h % dimension as u64) as usize] += 1.0;
    }
    if v.iter().all(|x| *x == 0.0) {
        v[0] = 1.0;
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A server offering the fake API as `REMOTE` (and no neural model), with a 2 s timeout and
/// one retry unless `configure` says otherwise. Returns once the start-up probe was answered,
/// with the probe checked and drained from the fake's log.
async fn spawn_with_remote(api: &FakeApi, configure: impl FnOnce(&mut EmbedderConfig)) -> TestApp {
    let spec = api.spec(REMOTE);
    let app = TestApp::spawn_with(|c| {
        c.embedders.models_dir = None;
        c.embedders.remote = vec![spec];
        c.embedders.timeout = Duration::from_secs(2);
        c.embedders.retries = 1;
        configure(&mut c.embedders);
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while remote_status(&app).await["dimension"] == 0 {
        assert!(
            Instant::now() < deadline,
            "the start-up probe was never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probe = api.take();
    assert_eq!(probe.len(), 1, "one probe at start: {probe:?}");
    assert_eq!(probe[0].input, ["dimension probe"]);
    app
}

const EMBEDDERS: &str =
    "{ embedders{ name dimension kind available isDefault unavailableReason } }";

async fn embedders(app: &TestApp) -> Vec<Value> {
    app.gql(EMBEDDERS, json!({})).await.data()["embedders"]
        .as_array()
        .expect("embedders is a list")
        .clone()
}

fn status_of<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list:?}"))
}

async fn remote_status(app: &TestApp) -> Value {
    status_of(&embedders(app).await, REMOTE).clone()
}

async fn remote_space(app: &TestApp, name: &str) -> String {
    app.space_as(&app.admin_key, name, json!({ "embedder": REMOTE }))
        .await
}

/// `space(id){ embedder{ name dimension kind } }`.
async fn space_embedder(app: &TestApp, space_id: &str) -> Value {
    app.gql(
        "query($s:ID!){ space(id:$s){ embedder{ name dimension kind } } }",
        json!({ "s": space_id }),
    )
    .await
    .data()["space"]["embedder"]
        .clone()
}

async fn create_memories(app: &TestApp, space_id: &str, contents: &[&str]) -> GqlResponse {
    let inputs: Vec<Value> = contents.iter().map(|c| json!({ "content": c })).collect();
    app.gql(
        "mutation($s:ID!,$i:[MemoryInput!]!){ createMemories(spaceId:$s,inputs:$i){ id } }",
        json!({ "s": space_id, "i": inputs }),
    )
    .await
}

/// What a space holds: (`memoryCount`, memory rows, chunk rows), the rows read straight from the
/// database (deleted and superseded memories included).
async fn stored(app: &TestApp, space_id: &str) -> (i64, usize, usize) {
    let count = app
        .gql(
            "query($s:ID!){ space(id:$s){ memoryCount } }",
            json!({ "s": space_id }),
        )
        .await
        .data()["space"]["memoryCount"]
        .as_i64()
        .expect("memoryCount");
    let id = uuid::Uuid::parse_str(space_id).expect("space ids are UUIDs");
    let memories = entity::memory::Entity::find()
        .filter(entity::memory::Column::SpaceId.eq(id))
        .all(&app.db.read)
        .await
        .expect("memories read");
    let chunks = entity::chunk::Entity::find()
        .filter(entity::chunk::Column::SpaceId.eq(id))
        .all(&app.db.read)
        .await
        .expect("chunks read");
    (count, memories.len(), chunks.len())
}

/// Asserts the response is one EMBEDDER_UNAVAILABLE naming `REMOTE`.
fn assert_embedder_unavailable(r: &GqlResponse) {
    assert_eq!(r.code(), "EMBEDDER_UNAVAILABLE", "{}", r.body);
    assert_eq!(r.error()["extensions"]["embedder"], REMOTE, "{}", r.body);
}

fn input_sizes(seen: &[Seen]) -> Vec<usize> {
    seen.iter().map(|s| s.input.len()).collect()
}

fn gaps(seen: &[Seen]) -> Vec<Duration> {
    seen.windows(2).map(|w| w[1].at - w[0].at).collect()
}

// ---------------------------------------------------------------------------------------------
// Remote embedder: success

#[tokio::test]
async fn a_remote_embedder_gets_batches_of_max_batch_with_its_model_and_key_and_search_uses_it() {
    let api = FakeApi::start(256).await;
    let app = spawn_with_remote(&api, |e| e.max_batch = 2).await;
    let space_id = remote_space(&app, "remote").await;
    let contents = [
        "Invoices are emailed to accounting on the first business day of each month.",
        "The staging cluster runs on three virtual machines in Frankfurt.",
        "Penguins huddle together to survive the Antarctic winter.",
        "The bakery on Elm Street sells sourdough only on Saturdays.",
        "Backups of the wiki are kept for ninety days.",
    ];

    let created = create_memories(&app, &space_id, &contents).await;
    let writes = api.take();
    let found = app
        .search_as(
            &app.admin_key,
            json!({ "query": "sourdough bakery saturdays", "mode": "SEMANTIC",
                    "spaceIds": [space_id] }),
        )
        .await;
    let searches = api.take();
    let space = app
        .gql(
            "query($s:ID!){ space(id:$s){ memoryCount embedder{ name dimension kind } } }",
            json!({ "s": space_id }),
        )
        .await;

    let ids: Vec<String> = created.data()["createMemories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(input_sizes(&writes), [2, 2, 1]);
    let sent: Vec<&str> = writes
        .iter()
        .flat_map(|s| s.input.iter().map(String::as_str))
        .collect();
    assert_eq!(sent, contents);
    for s in writes.iter().chain(&searches) {
        assert_eq!(s.model, MODEL);
        assert_eq!(
            s.authorization.as_deref(),
            Some(&*format!("Bearer {API_KEY}"))
        );
    }
    assert_eq!(searches.len(), 1);
    assert_eq!(searches[0].input, ["sourdough bakery saturdays"]);
    assert_eq!(found.hit_ids().first(), Some(&ids[3]), "{}", found.body);
    assert_eq!(
        space.data()["space"],
        json!({ "memoryCount": 5,
                "embedder": { "name": REMOTE, "dimension": 256, "kind": "REMOTE" } })
    );
}

// ---------------------------------------------------------------------------------------------
// Remote embedder: failures fail the write and store nothing

#[tokio::test]
async fn a_remote_embedder_that_times_out_fails_the_write_with_embedder_unavailable() {
    let api = FakeApi::start(16).await;
    let app = spawn_with_remote(&api, |e| {
        e.timeout = Duration::from_millis(500);
        e.retries = 1;
    })
    .await;
    let space_id = remote_space(&app, "slow").await;
    api.always(Reply::Stall(Duration::from_secs(5)));

    let started = Instant::now();
    let r = app
        .create_memory_as(&app.admin_key, &space_id, "Too slow to embed", json!({}))
        .await;
    let took = started.elapsed();

    assert_embedder_unavailable(&r);
    let message = r.error()["message"].as_str().unwrap_or("");
    assert!(message.contains(REMOTE), "{message}");
    assert_eq!(api.take().len(), 2, "one call and one retry");
    assert!(took < Duration::from_secs(4), "gave up after {took:?}");
    assert_eq!(stored(&app, &space_id).await, (0, 0, 0));
}

#[tokio::test]
async fn a_remote_embedder_answering_5xx_is_retried_with_backoff_then_the_write_fails() {
    let api = FakeApi::start(16).await;
    let app = spawn_with_remote(&api, |e| e.retries = 2).await;
    let space_id = remote_space(&app, "broken").await;
    api.always(Reply::Status(500));

    let r = create_memories(&app, &space_id, &["one", "two"]).await;
    let seen = api.take();

    assert_embedder_unavailable(&r);
    assert_eq!(seen.len(), 3, "1 call + 2 retries");
    let waited = gaps(&seen);
    // Backoff 200 ms, then doubled.
    assert!(waited[0] >= Duration::from_millis(190), "{waited:?}");
    assert!(waited[1] >= Duration::from_millis(390), "{waited:?}");
    assert_eq!(stored(&app, &space_id).await, (0, 0, 0));
}

#[tokio::test]
async fn a_single_5xx_is_retried_and_the_write_succeeds() {
    let api = FakeApi::start(16).await;
    let app = spawn_with_remote(&api, |e| e.retries = 2).await;
    let space_id = remote_space(&app, "flaky").await;
    api.then(&[Reply::Status(503)], Reply::Vectors);

    let r = app
        .create_memory_as(&app.admin_key, &space_id, "Survives a hiccup", json!({}))
        .await;

    r.data();
    assert_eq!(input_sizes(&api.take()), [1, 1]);
    assert_eq!(stored(&app, &space_id).await, (1, 1, 1));
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_the_write_succeeds() {
    let api = FakeApi::start(16).await;
    let app = spawn_with_remote(&api, |e| e.retries = 1).await;
    let space_id = remote_space(&app, "limited").await;
    api.then(&[Reply::RateLimited(1)], Reply::Vectors);

    let r = app
        .create_memory_as(&app.admin_key, &space_id, "Worth the wait", json!({}))
        .await;
    let seen = api.take();

    r.data();
    assert_eq!(seen.len(), 2);
    // Retry-After: 1 beats the 200 ms backoff.
    assert!(
        gaps(&seen)[0] >= Duration::from_millis(950),
        "{:?}",
        gaps(&seen)
    );
    assert_eq!(stored(&app, &space_id).await, (1, 1, 1));
}

#[tokio::test]
async fn a_4xx_other_than_429_is_not_retried() {
    let api = FakeApi::start(16).await;
    let app = spawn_with_remote(&api, |e| e.retries = 3).await;
    let space_id = remote_space(&app, "refused").await;
    api.always(Reply::Status(401));

    let r = app
        .create_memory_as(&app.admin_key, &space_id, "Bad key", json!({}))
        .await;

    assert_embedder_unavailable(&r);
    assert_eq!(api.take().len(), 1);
    assert_eq!(stored(&app, &space_id).await, (0, 0, 0));
}

#[tokio::test]
async fn an_answer_of_another_dimension_than_learned_fails_the_write_and_stores_nothing() {
    let api = FakeApi::start(8).await;
    let app = spawn_with_remote(&api, |_| {}).await;
    let space_id = remote_space(&app, "dimensions").await;
    let first = app
        .create_memory_as(&app.admin_key, &space_id, "Eight dimensions", json!({}))
        .await;
    api.set_dimension(12);

    let second = app
        .create_memory_as(&app.admin_key, &space_id, "Twelve dimensions", json!({}))
        .await;
    let batch = create_memories(&app, &space_id, &["Twelve", "again"]).await;

    first.data();
    assert_embedder_unavailable(&second);
    assert_embedder_unavailable(&batch);
    assert_eq!(input_sizes(&api.take()), [1, 1, 2], "not retried");
    assert_eq!(remote_status(&app).await["dimension"], 8);
    assert_eq!(stored(&app, &space_id).await, (1, 1, 1));
}

#[tokio::test]
async fn an_answer_with_the_wrong_number_of_embeddings_fails_the_write_and_stores_nothing() {
    let api = FakeApi::start(8).await;
    let app = spawn_with_remote(&api, |_| {}).await;
    let space_id = remote_space(&app, "count").await;
    api.always(Reply::ExtraEmbedding);

    let r = create_memories(&app, &space_id, &["one", "two", "three"]).await;

    assert_embedder_unavailable(&r);
    assert_eq!(input_sizes(&api.take()), [3], "not retried");
    assert_eq!(stored(&app, &space_id).await, (0, 0, 0));
}

#[tokio::test]
async fn a_batch_whose_second_embedding_call_fails_stores_none_of_its_memories() {
    let api = FakeApi::start(16).await;
    let app = spawn_with_remote(&api, |e| {
        e.max_batch = 2;
        e.retries = 1;
    })
    .await;
    let space_id = remote_space(&app, "half").await;
    let contents = [
        "alpha one",
        "beta two",
        "gamma three",
        "delta four",
        "epsilon five",
    ];
    api.then(&[Reply::Vectors], Reply::Status(500));

    let r = create_memories(&app, &space_id, &contents).await;
    let seen = api.take();

    assert_embedder_unavailable(&r);
    // The first call answered, the second failed twice (call + retry), the third never went.
    assert_eq!(input_sizes(&seen), [2, 2, 2]);
    assert_eq!(seen[1].input, ["gamma three", "delta four"]);
    assert_eq!(seen[2].input, seen[1].input);
    assert_eq!(stored(&app, &space_id).await, (0, 0, 0));
}

#[tokio::test]
async fn updating_content_while_the_embedder_is_down_fails_and_keeps_the_memory_as_it_was() {
    let api = FakeApi::start(16).await;
    let app = spawn_with_remote(&api, |_| {}).await;
    let space_id = remote_space(&app, "update").await;
    let id = app
        .memory_as(&app.admin_key, &space_id, "The old content", json!({}))
        .await;
    api.take();
    api.always(Reply::Status(502));
    let update = "mutation($id:ID!,$i:UpdateMemoryInput!){ updateMemory(id:$id,input:$i){ \
                  content version tags } }";
    let read = "query($id:ID!){ memory(id:$id){ content version tags } }";

    let changed = app
        .gql(
            update,
            json!({ "id": id, "i": { "content": "The new content" } }),
        )
        .await;
    let after_failure = app.gql(read, json!({ "id": id })).await;
    let calls = api.take().len();
    // Changing only tags needs no embedding, so it works while the embedder is down.
    let retagged = app
        .gql(update, json!({ "id": id, "i": { "tags": ["kept"] } }))
        .await;

    assert_embedder_unavailable(&changed);
    assert_eq!(calls, 2, "1 call + 1 retry");
    assert_eq!(
        after_failure.data()["memory"],
        json!({ "content": "The old content", "version": 1, "tags": [] })
    );
    assert_eq!(
        retagged.data()["updateMemory"],
        json!({ "content": "The old content", "version": 2, "tags": ["kept"] })
    );
    assert!(api.take().is_empty());
    let chunks: Vec<String> = entity::chunk::Entity::find()
        .filter(entity::chunk::Column::MemoryId.eq(uuid::Uuid::parse_str(&id).unwrap()))
        .order_by_asc(entity::chunk::Column::Ord)
        .all(&app.db.read)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.text)
        .collect();
    assert_eq!(chunks, ["The old content"]);
}

// ---------------------------------------------------------------------------------------------
// Search while the embedder is down

#[tokio::test]
async fn semantic_search_of_a_space_whose_embedder_is_down_fails_and_hybrid_falls_back_to_keywords()
{
    let api = FakeApi::start(64).await;
    let app = spawn_with_remote(&api, |e| e.retries = 1).await;
    let space_id = remote_space(&app, "down").await;
    let lamp = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "The lighthouse lamp is cleaned every Tuesday",
            json!({}),
        )
        .await;
    app.memory_as(
        &app.admin_key,
        &space_id,
        "The harbour ferry leaves at noon",
        json!({}),
    )
    .await;
    api.take();
    api.always(Reply::Status(500));
    let query =
        |mode: &str| json!({ "query": "lighthouse lamp", "mode": mode, "spaceIds": [space_id] });

    let semantic = app.search_as(&app.admin_key, query("SEMANTIC")).await;
    let semantic_calls = api.take().len();
    let hybrid = app.search_as(&app.admin_key, query("HYBRID")).await;
    let hybrid_calls = api.take().len();
    let keyword = app.search_as(&app.admin_key, query("KEYWORD")).await;
    let keyword_calls = api.take().len();

    assert_embedder_unavailable(&semantic);
    assert_eq!(semantic_calls, 2, "1 call + 1 retry");
    assert_eq!(hybrid.hit_ids(), [lamp.as_str()]);
    assert_eq!(hybrid_calls, 2);
    assert_eq!(keyword.hit_ids(), [lamp]);
    assert_eq!(keyword_calls, 0, "KEYWORD never embeds the query");
}

#[tokio::test]
async fn a_search_over_several_spaces_leaves_out_the_semantic_half_of_those_whose_embedder_is_down()
{
    let api = FakeApi::start(64).await;
    let app = spawn_with_remote(&api, |e| e.retries = 1).await;
    let local = app.space_as(&app.admin_key, "local", json!({})).await;
    let remote = remote_space(&app, "remote").await;
    let keeper = app
        .memory_as(
            &app.admin_key,
            &local,
            "The lighthouse keeper logs the weather at dawn",
            json!({}),
        )
        .await;
    let lamp = app
        .memory_as(
            &app.admin_key,
            &remote,
            "The lighthouse lamp is cleaned every Tuesday",
            json!({}),
        )
        .await;
    api.take();
    api.always(Reply::Status(500));

    // No spaceIds: every readable space, so one space's embedder being down is no error.
    let semantic = app
        .search_as(
            &app.admin_key,
            json!({ "query": "lighthouse", "mode": "SEMANTIC" }),
        )
        .await;
    let semantic_calls = api.take().len();
    let hybrid = app
        .search_as(
            &app.admin_key,
            json!({ "query": "lighthouse", "mode": "HYBRID" }),
        )
        .await;

    assert_eq!(semantic.hit_ids(), [keeper.as_str()]);
    assert_eq!(semantic_calls, 2, "1 call + 1 retry");
    let mut both = hybrid.hit_ids();
    both.sort();
    let mut want = vec![keeper, lamp];
    want.sort();
    assert_eq!(both, want);
}

/// Spaces sharing one embedder should cost one query embedding, also when it fails: today the
/// search embeds the query again for every space of a down embedder (each time with all its
/// retries and timeouts), so a search over N such spaces waits N times as long.
#[tokio::test]
async fn a_down_embedder_shared_by_several_spaces_is_asked_once_per_search() {
    let api = FakeApi::start(64).await;
    let app = spawn_with_remote(&api, |e| e.retries = 1).await;
    let first = remote_space(&app, "first").await;
    let second = remote_space(&app, "second").await;
    app.memory_as(&app.admin_key, &first, "Lighthouse one", json!({}))
        .await;
    app.memory_as(&app.admin_key, &second, "Lighthouse two", json!({}))
        .await;
    api.take();
    api.always(Reply::Status(500));

    let hybrid = app
        .search_as(
            &app.admin_key,
            json!({ "query": "lighthouse", "mode": "HYBRID" }),
        )
        .await;

    assert_eq!(hybrid.hit_ids().len(), 2);
    assert_eq!(api.take().len(), 2, "1 call + 1 retry, not per space");
}

/// src/search/service.rs says "a search fails only when every space it covers has no working
/// embedder and no keyword half", but it fails only when it covers exactly one space: SEMANTIC
/// over two spaces whose embedder is down answers an empty list, as if nothing matched.
#[tokio::test]
async fn semantic_search_over_spaces_whose_embedders_are_all_down_is_embedder_unavailable() {
    let api = FakeApi::start(64).await;
    let app = spawn_with_remote(&api, |e| e.retries = 0).await;
    let first = remote_space(&app, "first").await;
    let second = remote_space(&app, "second").await;
    app.memory_as(&app.admin_key, &first, "Lighthouse one", json!({}))
        .await;
    app.memory_as(&app.admin_key, &second, "Lighthouse two", json!({}))
        .await;
    api.always(Reply::Status(500));

    let semantic = app
        .search_as(
            &app.admin_key,
            json!({ "query": "lighthouse", "mode": "SEMANTIC", "spaceIds": [first, second] }),
        )
        .await;

    assert_embedder_unavailable(&semantic);
}

// ---------------------------------------------------------------------------------------------
// The `embedders` query, the default, and the choice at createSpace

#[tokio::test]
async fn the_embedders_query_lists_the_builtin_the_remote_and_an_uninstalled_model_with_how_to_install_it(
) {
    let api = FakeApi::start(24).await;
    let models = tempfile::tempdir().expect("temp dir");
    let models_dir = models.path().to_path_buf();
    let app = spawn_with_remote(&api, move |e| e.models_dir = Some(models_dir)).await;

    let list = embedders(&app).await;

    let mut names: Vec<&str> = list.iter().map(|e| e["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, [BUILTIN, REMOTE, NEURAL]);
    assert_eq!(
        status_of(&list, BUILTIN),
        &json!({ "name": BUILTIN, "dimension": 384, "kind": "LEXICAL", "available": true,
                 "isDefault": true, "unavailableReason": null })
    );
    assert_eq!(
        status_of(&list, REMOTE),
        &json!({ "name": REMOTE, "dimension": 24, "kind": "REMOTE", "available": true,
                 "isDefault": false, "unavailableReason": null })
    );
    let neural = status_of(&list, NEURAL);
    assert_eq!(neural["kind"], "NEURAL");
    assert_eq!(neural["available"], false);
    assert_eq!(neural["isDefault"], false);
    assert_eq!(neural["dimension"], 384);
    let reason = neural["unavailableReason"].as_str().unwrap_or("");
    assert!(reason.contains("scripts/fetch-model"), "{reason}");
}

#[tokio::test]
async fn without_a_models_dir_the_neural_model_is_not_offered() {
    let app = TestApp::spawn_with(|c| c.embedders.models_dir = None).await;

    let list = embedders(&app).await;

    assert_eq!(
        list,
        [
            json!({ "name": BUILTIN, "dimension": 384, "kind": "LEXICAL", "available": true,
                 "isDefault": true, "unavailableReason": null })
        ]
    );
}

#[tokio::test]
async fn a_configured_default_embedder_is_given_to_spaces_created_without_one() {
    let api = FakeApi::start(32).await;
    let app = spawn_with_remote(&api, |e| e.default = Some(REMOTE.to_string())).await;

    let defaulted = app.space_as(&app.admin_key, "defaulted", json!({})).await;
    let chosen = app
        .space_as(&app.admin_key, "chosen", json!({ "embedder": BUILTIN }))
        .await;
    let list = embedders(&app).await;

    assert_eq!(
        space_embedder(&app, &defaulted).await,
        json!({ "name": REMOTE, "dimension": 32, "kind": "REMOTE" })
    );
    assert_eq!(
        space_embedder(&app, &chosen).await,
        json!({ "name": BUILTIN, "dimension": 384, "kind": "LEXICAL" })
    );
    assert_eq!(status_of(&list, REMOTE)["isDefault"], true);
    assert_eq!(status_of(&list, BUILTIN)["isDefault"], false);
}

#[tokio::test]
async fn creating_a_space_with_an_unknown_or_uninstalled_embedder_is_a_validation_error() {
    let api = FakeApi::start(8).await;
    let models = tempfile::tempdir().expect("temp dir");
    let models_dir = models.path().to_path_buf();
    let app = spawn_with_remote(&api, move |e| e.models_dir = Some(models_dir)).await;

    let unknown = app
        .create_space_as(
            &app.admin_key,
            json!({ "name": "u", "embedder": "no-such-model" }),
        )
        .await;
    let uninstalled = app
        .create_space_as(&app.admin_key, json!({ "name": "n", "embedder": NEURAL }))
        .await;
    let spaces = app.gql("{ spaces{ totalCount } }", json!({})).await;

    assert_eq!(unknown.code(), "VALIDATION_ERROR");
    assert_eq!(unknown.field(), "embedder");
    let message = unknown.error()["message"].as_str().unwrap_or("");
    assert!(
        message.contains(BUILTIN) && message.contains(REMOTE),
        "lists the available embedders: {message}"
    );
    assert_eq!(uninstalled.code(), "VALIDATION_ERROR");
    assert_eq!(uninstalled.field(), "embedder");
    let message = uninstalled.error()["message"].as_str().unwrap_or("");
    assert!(message.contains("scripts/fetch-model"), "{message}");
    assert_eq!(spaces.data()["spaces"]["totalCount"], 0);
}

/// The server refuses to start rather than give new spaces an embedder it cannot run. The build
/// fails before the database is migrated, so an SQLite file serves on either backend.
#[tokio::test]
async fn a_default_embedder_that_is_unknown_or_uninstalled_stops_the_server_from_starting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let models = tempfile::tempdir().expect("temp dir");
    let build = |default: &'static str| {
        let mut config = memspace::Config::new(format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("refused.db").display()
        ));
        config.embedders.models_dir = Some(models.path().to_path_buf());
        config.embedders.default = Some(default.to_string());
        async move {
            match memspace::build(&config).await {
                Ok(_) => panic!("the server started with default embedder {default:?}"),
                Err(e) => format!("{e:#}"),
            }
        }
    };

    let unknown = build("no-such-model").await;
    let uninstalled = build(NEURAL).await;

    assert!(
        unknown.contains("no-such-model") && unknown.contains(BUILTIN),
        "{unknown}"
    );
    assert!(uninstalled.contains("scripts/fetch-model"), "{uninstalled}");
}
