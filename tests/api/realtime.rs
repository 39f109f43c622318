//! `memoryEvents(spaceId)` over a real WebSocket (graphql-transport-ws on `/graphql/ws`): the
//! committed writes of one space arrive in order, rolled-back writes send nothing, bad
//! credentials close the socket with 4403, and the stream ends with an error then `complete`
//! as soon as the subscriber loses access. Runs on SQLite and, with `TEST_DATABASE_URL`, on
//! PostgreSQL (events through LISTEN/NOTIFY).
//!
//! The fan-out benchmark is the ignored test `bench_fan_out_to_1000_subscribers`:
//! `cargo test --release --test api realtime::bench -- --ignored --nocapture`.
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{GqlResponse, TestApp};

/// The subscription every test uses.
pub(crate) const EVENTS: &str = "subscription($s:ID!){ memoryEvents(spaceId:$s){ \
     kind memoryId spaceId at memory{ id content } \
     actor{ __typename ... on User{ id } ... on Agent{ id } } } }";

/// How long a stream may take to end after access is lost.
const END_WITHIN: Duration = Duration::from_secs(1);

/// What one subscription produced next.
#[derive(Debug)]
pub(crate) enum Item {
    /// A `next` message with data: the `memoryEvents` object.
    Event(Value),
    /// A `next` (or `error`) message with errors: their `extensions.code`s, and the message.
    Error(Vec<String>, Value),
    /// `complete` for the subscription.
    Complete,
    /// The socket closed (close code, if there was a close frame).
    Closed(Option<u16>),
    /// Nothing arrived in time.
    Timeout,
}

/// A graphql-transport-ws client.
pub(crate) struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    /// Opens `/graphql/ws` of `base` (an `http://` URL) with the `graphql-transport-ws`
    /// subprotocol and sends `connection_init` with `payload` (none when it is null); does not
    /// wait for the answer.
    pub(crate) async fn open(base: &str, payload: Value) -> Ws {
        Ws::open_on(base, "/graphql/ws", payload).await
    }

    /// `open` on another path of the server (`/graphql` upgrades too).
    pub(crate) async fn open_on(base: &str, path: &str, payload: Value) -> Ws {
        let url = format!("{}{path}", base.replacen("http", "ws", 1));
        let mut request = url.as_str().into_client_request().expect("ws request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (stream, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket handshake");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("graphql-transport-ws"),
            "the server must select graphql-transport-ws"
        );
        let mut ws = Ws { stream };
        let init = if payload.is_null() {
            json!({ "type": "connection_init" })
        } else {
            json!({ "type": "connection_init", "payload": payload })
        };
        ws.send(init).await;
        ws
    }

    /// `open`, then waits for `connection_ack` (panics on anything else).
    pub(crate) async fn connect(base: &str, payload: Value) -> Ws {
        let mut ws = Ws::open(base, payload).await;
        match ws.frame(Duration::from_secs(10)).await {
            Some(Ok(m)) if m["type"] == "connection_ack" => ws,
            other => panic!("expected connection_ack, got {other:?}"),
        }
    }

    /// Connected with `{"authorization": "Bearer <key>"}`.
    pub(crate) async fn bearer(base: &str, key: &str) -> Ws {
        Ws::connect(base, json!({ "authorization": format!("Bearer {key}") })).await
    }

    pub(crate) async fn send(&mut self, message: Value) {
        self.stream
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("websocket send");
    }

    /// Sends `subscribe` for `memoryEvents(spaceId)` under `id`.
    pub(crate) async fn subscribe(&mut self, id: &str, space_id: &str) {
        self.subscribe_query(id, EVENTS, space_id).await;
    }

    /// Sends `subscribe` for `query` (with variable `$s` = `space_id`) under `id`.
    pub(crate) async fn subscribe_query(&mut self, id: &str, query: &str, space_id: &str) {
        self.send(json!({
            "id": id,
            "type": "subscribe",
            "payload": { "query": query, "variables": { "s": space_id } },
        }))
        .await;
    }

    /// Sends a graphql-transport-ws `ping` (keeps the server's keepalive timer happy).
    pub(crate) async fn ping(&mut self) {
        self.send(json!({ "type": "ping" })).await;
    }

    /// The next protocol message within `wait` (pings answered, pongs skipped): `Ok(message)`,
    /// `Err(close code)` when the socket closed, `None` on timeout.
    pub(crate) async fn frame(&mut self, wait: Duration) -> Option<Result<Value, Option<u16>>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(Err(None)),
                Ok(Some(Err(e))) => {
                    eprintln!("websocket read error: {e}");
                    return Some(Err(None));
                }
                Ok(Some(Ok(m))) => m,
            };
            match message {
                Message::Text(text) => {
                    let v: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
                    match v["type"].as_str() {
                        Some("ping") => self.send(json!({ "type": "pong" })).await,
                        Some("pong") => {}
                        _ => return Some(Ok(v)),
                    }
                }
                Message::Close(frame) => return Some(Err(frame.map(|f| u16::from(f.code)))),
                _ => {}
            }
        }
    }

    /// What subscription `id` produced next, within `wait`.
    pub(crate) async fn item(&mut self, id: &str, wait: Duration) -> Item {
        let m = match self.frame(wait).await {
            None => return Item::Timeout,
            Some(Err(code)) => return Item::Closed(code),
            Some(Ok(m)) => m,
        };
        assert_eq!(m["id"], id, "a message for another subscription: {m}");
        match m["type"].as_str() {
            Some("complete") => Item::Complete,
            Some("next") if m["payload"]["errors"].is_array() => Item::Error(codes(&m), m),
            Some("next") => Item::Event(m["payload"]["data"]["memoryEvents"].clone()),
            Some("error") => Item::Error(codes(&m), m),
            _ => panic!("unexpected message: {m}"),
        }
    }

    /// The next event of subscription `id`; panics on anything else.
    pub(crate) async fn event(&mut self, id: &str, wait: Duration) -> Value {
        match self.item(id, wait).await {
            Item::Event(e) => e,
            other => panic!("expected an event on {id}, got {other:?}"),
        }
    }

    /// Asserts that subscription `id` ends within `within`: an error with `code`, then
    /// `complete` (or the socket closing).
    pub(crate) async fn expect_end(&mut self, id: &str, code: &str, within: Duration) {
        let started = Instant::now();
        match self.item(id, within).await {
            Item::Error(codes, m) => assert_eq!(codes, [code], "wrong error: {m}"),
            other => {
                panic!("expected the stream to end with {code} within {within:?}, got {other:?}")
            }
        }
        let rest = within.saturating_sub(started.elapsed()) + Duration::from_millis(200);
        match self.item(id, rest).await {
            Item::Complete => {}
            Item::Closed(close) => eprintln!("socket closed ({close:?}) after the {code} error"),
            other => panic!("expected complete after the {code} error, got {other:?}"),
        }
        eprintln!("stream ended with {code} after {:?}", started.elapsed());
    }

    /// Asserts that nothing arrives on the socket for `wait`.
    pub(crate) async fn quiet(&mut self, wait: Duration) {
        if let Some(f) = self.frame(wait).await {
            panic!("expected silence, got {f:?}");
        }
    }
}

/// The error codes of a `next`/`error` message.
fn codes(m: &Value) -> Vec<String> {
    let errors = if m["payload"]["errors"].is_array() {
        &m["payload"]["errors"]
    } else {
        &m["payload"]
    };
    errors
        .as_array()
        .map(|errs| {
            errs.iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// POST /graphql of the server at `base` with `Authorization: Bearer <key>`.
pub(crate) async fn gql_at(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    query: &str,
    variables: Value,
) -> GqlResponse {
    let resp = client
        .post(format!("{base}/graphql"))
        .bearer_auth(key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let body = resp.json().await.expect("JSON body");
    GqlResponse { status, body }
}

/// Writes memories into one space of the server at `url` (HTTP), as `key`.
pub(crate) struct Writer {
    pub client: reqwest::Client,
    pub url: String,
    pub key: String,
    pub space_id: String,
}

impl Writer {
    pub(crate) fn new(url: &str, key: &str, space_id: &str) -> Writer {
        Writer {
            client: reqwest::Client::new(),
            url: url.to_string(),
            key: key.to_string(),
            space_id: space_id.to_string(),
        }
    }

    /// `createMemory`; returns its id (panics on errors).
    pub(crate) async fn create(&self, content: &str) -> String {
        let r = gql_at(
            &self.client,
            &self.url,
            &self.key,
            "mutation($i:CreateMemoryInput!){ createMemory(input:$i){ id } }",
            json!({ "i": { "spaceId": self.space_id, "content": content } }),
        )
        .await;
        r.data()["createMemory"]["id"].as_str().unwrap().to_string()
    }
}

/// Waits until subscription `id` is live: graphql-transport-ws does not acknowledge a
/// `subscribe`, so probe memories are written until one arrives; every probe written after
/// it is then drained too, leaving the stream with nothing pending.
pub(crate) async fn await_live(ws: &mut Ws, id: &str, writer: &Writer) {
    let mut probes: Vec<String> = Vec::new();
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "subscription {id} never delivered a probe"
        );
        probes.push(writer.create(&format!("probe {}", probes.len())).await);
        match ws.item(id, Duration::from_millis(300)).await {
            Item::Timeout => continue,
            Item::Event(e) => {
                let at = probes
                    .iter()
                    .position(|p| e["memoryId"] == p.as_str())
                    .unwrap_or_else(|| panic!("not a probe: {e}"));
                for p in &probes[at + 1..] {
                    let e = ws.event(id, Duration::from_secs(5)).await;
                    assert_eq!(e["memoryId"], p.as_str(), "probes out of order");
                }
                return;
            }
            other => panic!("subscription {id} failed while waiting for a probe: {other:?}"),
        }
    }
}

/// A space owned by `owner_key` with `VIEW` granted to `viewer_id` (when given).
async fn space_viewed_by(app: &TestApp, owner_key: &str, viewer_id: Option<&str>) -> String {
    let space = app
        .space_as(
            owner_key,
            &format!("rt-{}", uuid::Uuid::now_v7()),
            json!({}),
        )
        .await;
    if let Some(viewer) = viewer_id {
        app.share_as(
            owner_key,
            &space,
            json!([{ "subjectKind": "USER", "subjectId": viewer, "permission": "VIEW" }]),
        )
        .await
        .data();
    }
    space
}

/// An API key for `user_id` and its id (as the admin).
async fn key_with_id(app: &TestApp, user_id: &str) -> (String, String) {
    let r = app
        .gql(
            "mutation($u:ID!){ createApiKey(input:{userId:$u,name:\"ws\"}){ key apiKey{ id } } }",
            json!({ "u": user_id }),
        )
        .await;
    let k = &r.data()["createApiKey"];
    (
        k["key"].as_str().unwrap().to_string(),
        k["apiKey"]["id"].as_str().unwrap().to_string(),
    )
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_subscriber_receives_created_updated_deleted_in_order_and_nothing_from_other_spaces() {
    let app = TestApp::spawn().await;
    let (alice, alice_key) = app.user("alice", false).await;
    let (bob, bob_key) = app.user("bob", false).await;
    let space = space_viewed_by(&app, &alice_key, Some(&bob)).await;
    let other = space_viewed_by(&app, &alice_key, Some(&bob)).await;
    let writer = Writer::new(&app.url, &alice_key, &space);
    let elsewhere = Writer::new(&app.url, &alice_key, &other);

    let mut ws = Ws::bearer(&app.url, &bob_key).await;
    ws.subscribe("s", &space).await;
    await_live(&mut ws, "s", &writer).await;

    // A write to another space first: it must not show up before (or instead of) ours.
    elsewhere.create("not for this subscriber").await;
    let id = writer.create("first version").await;
    let created = ws.event("s", WAIT).await;
    assert_eq!(created["kind"], "CREATED", "{created}");
    assert_eq!(created["memoryId"], id.as_str());
    assert_eq!(created["spaceId"], space.as_str());
    assert_eq!(created["memory"]["id"], id.as_str());
    assert_eq!(created["memory"]["content"], "first version");
    assert_eq!(created["actor"]["__typename"], "User");
    assert_eq!(created["actor"]["id"], alice.as_str());
    assert!(created["at"].as_str().is_some_and(|s| !s.is_empty()));

    let r = app
        .gql_as(
            Some(&alice_key),
            "mutation($id:ID!){ updateMemory(id:$id,input:{content:\"second version\"}){ id } }",
            json!({ "id": id }),
        )
        .await;
    r.data();
    let updated = ws.event("s", WAIT).await;
    assert_eq!(updated["kind"], "UPDATED", "{updated}");
    assert_eq!(updated["memoryId"], id.as_str());
    assert_eq!(updated["memory"]["content"], "second version");
    assert_eq!(updated["actor"]["id"], alice.as_str());

    elsewhere.create("still not for this subscriber").await;
    let r = app
        .gql_as(
            Some(&alice_key),
            "mutation($id:ID!){ deleteMemory(id:$id) }",
            json!({ "id": id }),
        )
        .await;
    r.data();
    let deleted = ws.event("s", WAIT).await;
    assert_eq!(deleted["kind"], "DELETED", "{deleted}");
    assert_eq!(deleted["memoryId"], id.as_str());
    assert_eq!(deleted["spaceId"], space.as_str());
    assert!(deleted["memory"].is_null(), "{deleted}");
    assert_eq!(deleted["actor"]["id"], alice.as_str());

    // Writes elsewhere only: nothing arrives.
    for i in 0..3 {
        elsewhere.create(&format!("elsewhere {i}")).await;
    }
    ws.quiet(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn create_memories_emits_one_created_event_per_item_in_input_order() {
    let app = TestApp::spawn().await;
    let (_, alice_key) = app.user("alice", false).await;
    let space = space_viewed_by(&app, &alice_key, None).await;
    let writer = Writer::new(&app.url, &alice_key, &space);
    let mut ws = Ws::bearer(&app.url, &alice_key).await;
    ws.subscribe("1", &space).await;
    await_live(&mut ws, "1", &writer).await;

    let contents: Vec<String> = ["one", "two", "three"].map(String::from).to_vec();
    let ids = app.memories_as(&alice_key, &space, &contents).await;
    assert_eq!(ids.len(), 3);
    for (id, content) in ids.iter().zip(&contents) {
        let e = ws.event("1", WAIT).await;
        assert_eq!(e["kind"], "CREATED", "{e}");
        assert_eq!(e["memoryId"], id.as_str(), "events out of input order");
        assert_eq!(e["memory"]["content"], content.as_str());
    }
    ws.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_rolled_back_batch_emits_no_event() {
    let app = TestApp::spawn().await;
    let (_, alice_key) = app.user("alice", false).await;
    let space = space_viewed_by(&app, &alice_key, None).await;
    let writer = Writer::new(&app.url, &alice_key, &space);
    let mut ws = Ws::bearer(&app.url, &alice_key).await;
    ws.subscribe("1", &space).await;
    await_live(&mut ws, "1", &writer).await;

    // Item 1 of 3 is invalid: nothing of the batch is stored, so nothing is announced.
    let bad = app
        .gql_as(
            Some(&alice_key),
            "mutation($s:ID!,$i:[MemoryInput!]!){ createMemories(spaceId:$s,inputs:$i){ id } }",
            json!({ "s": space, "i": [
                { "content": "fine" },
                { "content": "" },
                { "content": "also fine" },
            ] }),
        )
        .await;
    assert_eq!(bad.code(), "VALIDATION_ERROR", "{}", bad.body);
    // The same with a failure past validation: an unknown agent id on the last item.
    let bad = app
        .gql_as(
            Some(&alice_key),
            "mutation($s:ID!,$i:[MemoryInput!]!){ createMemories(spaceId:$s,inputs:$i){ id } }",
            json!({ "s": space, "i": [
                { "content": "fine" },
                { "content": "also fine" },
                { "content": "bad agent", "agentId": uuid::Uuid::now_v7().to_string() },
            ] }),
        )
        .await;
    assert!(!bad.codes().is_empty(), "expected an error: {}", bad.body);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let marker = writer.create("marker").await;
    let e = ws.event("1", WAIT).await;
    assert_eq!(
        e["memoryId"],
        marker.as_str(),
        "a failed batch announced something: {e}"
    );
}

#[tokio::test]
async fn connection_init_without_a_valid_key_closes_the_socket_with_4403() {
    let app = TestApp::spawn().await;
    for payload in [
        Value::Null,
        json!({}),
        json!({ "authorization": "" }),
        json!({ "authorization": "Bearer not-a-real-key-0123456789" }),
        json!({ "authorization": format!("Basic {}", app.admin_key) }),
        json!({ "x-api-key": "not-a-real-key-0123456789" }),
    ] {
        let mut ws = Ws::open(&app.url, payload.clone()).await;
        match ws.frame(WAIT).await {
            Some(Err(Some(4403))) => {}
            other => panic!("connection_init {payload}: expected close 4403, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn subscribing_to_a_space_the_caller_cannot_see_is_not_found() {
    let app = TestApp::spawn().await;
    let (_, alice_key) = app.user("alice", false).await;
    let (_, bob_key) = app.user("bob", false).await;
    let private = space_viewed_by(&app, &alice_key, None).await;
    let other_org = app.other_org("elsewhere").await;
    let foreign = app.space_as(&other_org, "foreign", json!({})).await;
    let mut ws = Ws::bearer(&app.url, &bob_key).await;
    for (n, space) in [private, foreign, uuid::Uuid::now_v7().to_string()]
        .iter()
        .enumerate()
    {
        let id = format!("s{n}");
        ws.subscribe(&id, space).await;
        match ws.item(&id, WAIT).await {
            Item::Error(codes, m) => assert_eq!(codes, ["NOT_FOUND"], "{m}"),
            other => panic!("{space}: expected NOT_FOUND, got {other:?}"),
        }
        match ws.item(&id, WAIT).await {
            Item::Complete => {}
            other => panic!("{space}: expected complete after NOT_FOUND, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unsharing_the_subscriber_ends_its_stream_with_not_found() {
    let app = TestApp::spawn().await;
    let (_, alice_key) = app.user("alice", false).await;
    let (bob, bob_key) = app.user("bob", false).await;
    let space = space_viewed_by(&app, &alice_key, Some(&bob)).await;
    let writer = Writer::new(&app.url, &alice_key, &space);
    let mut bob_ws = Ws::bearer(&app.url, &bob_key).await;
    bob_ws.subscribe("b", &space).await;
    await_live(&mut bob_ws, "b", &writer).await;
    // The owner's own subscription is not affected.
    let mut alice_ws = Ws::bearer(&app.url, &alice_key).await;
    alice_ws.subscribe("a", &space).await;
    await_live(&mut alice_ws, "a", &writer).await;
    // alice's probes reached bob too.
    while let Item::Event(_) = bob_ws.item("b", Duration::from_millis(300)).await {}

    let r = app
        .gql_as(
            Some(&alice_key),
            "mutation($id:ID!,$g:[GrantInput!]!){ unshareSpace(id:$id,grants:$g){ id } }",
            json!({ "id": space, "g": [{ "subjectKind": "USER", "subjectId": bob }] }),
        )
        .await;
    r.data();
    bob_ws.expect_end("b", "NOT_FOUND", END_WITHIN).await;

    let id = writer.create("after unshare").await;
    assert_eq!(alice_ws.event("a", WAIT).await["memoryId"], id.as_str());
}

#[tokio::test]
async fn revoking_the_subscribers_api_key_ends_its_stream_with_unauthenticated() {
    let app = TestApp::spawn().await;
    let (_, alice_key) = app.user("alice", false).await;
    let (bob, _) = app.user("bob", false).await;
    let (bob_key, bob_key_id) = key_with_id(&app, &bob).await;
    let space = space_viewed_by(&app, &alice_key, Some(&bob)).await;
    let writer = Writer::new(&app.url, &alice_key, &space);
    let mut ws = Ws::bearer(&app.url, &bob_key).await;
    ws.subscribe("b", &space).await;
    await_live(&mut ws, "b", &writer).await;

    let r = app
        .gql(
            "mutation($id:ID!){ revokeApiKey(id:$id) }",
            json!({ "id": bob_key_id }),
        )
        .await;
    r.data();
    ws.expect_end("b", "UNAUTHENTICATED", END_WITHIN).await;
}

#[tokio::test]
async fn deleting_the_space_ends_every_stream_on_it_with_not_found() {
    let app = TestApp::spawn().await;
    let (_, alice_key) = app.user("alice", false).await;
    let (bob, bob_key) = app.user("bob", false).await;
    let space = space_viewed_by(&app, &alice_key, Some(&bob)).await;
    let writer = Writer::new(&app.url, &alice_key, &space);
    let mut bob_ws = Ws::bearer(&app.url, &bob_key).await;
    bob_ws.subscribe("b", &space).await;
    await_live(&mut bob_ws, "b", &writer).await;
    let mut alice_ws = Ws::bearer(&app.url, &alice_key).await;
    alice_ws.subscribe("a", &space).await;
    await_live(&mut alice_ws, "a", &writer).await;
    while let Item::Event(_) = bob_ws.item("b", Duration::from_millis(300)).await {}

    let r = app
        .gql_as(
            Some(&alice_key),
            "mutation($id:ID!){ deleteSpace(id:$id){ id } }",
            json!({ "id": space }),
        )
        .await;
    r.data();
    let started = Instant::now();
    bob_ws.expect_end("b", "NOT_FOUND", END_WITHIN).await;
    let left = END_WITHIN.saturating_sub(started.elapsed());
    alice_ws.expect_end("a", "NOT_FOUND", left).await;
}

#[tokio::test]
async fn revoking_the_space_token_of_a_subscriber_ends_its_stream() {
    let app = TestApp::spawn().await;
    let (_, alice_key) = app.user("alice", false).await;
    let space = space_viewed_by(&app, &alice_key, None).await;
    let writer = Writer::new(&app.url, &alice_key, &space);
    let (token_id, token) = app.space_token_as(&alice_key, &space, "VIEW", None).await;
    let mut ws = Ws::bearer(&app.url, &token).await;
    ws.subscribe("t", &space).await;
    await_live(&mut ws, "t", &writer).await;

    let r = app
        .gql_as(
            Some(&alice_key),
            "mutation($id:ID!){ revokeSpaceToken(id:$id) }",
            json!({ "id": token_id }),
        )
        .await;
    r.data();
    ws.expect_end("t", "UNAUTHENTICATED", END_WITHIN).await;
}

#[tokio::test]
async fn connection_init_takes_the_key_as_x_api_key_or_token_too() {
    let app = TestApp::spawn().await;
    let (_, alice_key) = app.user("alice", false).await;
    let space = space_viewed_by(&app, &alice_key, None).await;
    let writer = Writer::new(&app.url, &alice_key, &space);
    for payload in [
        json!({ "x-api-key": alice_key }),
        json!({ "X-API-Key": alice_key }),
        json!({ "authorization": format!("Token {alice_key}") }),
    ] {
        let mut ws = Ws::connect(&app.url, payload.clone()).await;
        ws.subscribe("x", &space).await;
        await_live(&mut ws, "x", &writer).await;
        let id = writer.create("via another header form").await;
        let e = ws.event("x", WAIT).await;
        assert_eq!(e["memoryId"], id.as_str(), "{payload}: {e}");
    }
}

#[tokio::test]
async fn a_view_space_token_can_subscribe_to_its_own_space_only() {
    let app = TestApp::spawn().await;
    let (alice, alice_key) = app.user("alice", false).await;
    let space = space_viewed_by(&app, &alice_key, None).await;
    let other = space_viewed_by(&app, &alice_key, None).await;
    let writer = Writer::new(&app.url, &alice_key, &space);
    let (_, token) = app.space_token_as(&alice_key, &space, "VIEW", None).await;
    let mut ws = Ws::bearer(&app.url, &token).await;
    ws.subscribe("t", &space).await;
    await_live(&mut ws, "t", &writer).await;
    let id = writer.create("seen by the token").await;
    let e = ws.event("t", WAIT).await;
    assert_eq!(e["kind"], "CREATED");
    assert_eq!(e["memoryId"], id.as_str());
    assert_eq!(e["memory"]["content"], "seen by the token");
    assert_eq!(e["actor"]["id"], alice.as_str());

    ws.subscribe("o", &other).await;
    match ws.item("o", WAIT).await {
        Item::Error(codes, m) => assert_eq!(codes, ["NOT_FOUND"], "{m}"),
        other => panic!("a token subscribing to another space: expected NOT_FOUND, got {other:?}"),
    }
}

/// graphql-transport-ws makes `ping` optional (the `graphql-ws` client sends none by default),
/// so a subscriber that only listens while events keep flowing must stay connected.
#[tokio::test]
async fn a_subscriber_that_only_listens_stays_connected_past_30_seconds() {
    let app = TestApp::spawn().await;
    let (_, alice_key) = app.user("alice", false).await;
    let space = space_viewed_by(&app, &alice_key, None).await;
    let writer = Writer::new(&app.url, &alice_key, &space);
    let mut ws = Ws::bearer(&app.url, &alice_key).await;
    // The client's last message: from here on it only reads.
    ws.subscribe("1", &space).await;
    let started = Instant::now();
    await_live(&mut ws, "1", &writer).await;
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(31) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let id = writer.create(&format!("tick {n}")).await;
        match ws.item("1", WAIT).await {
            Item::Event(e) => assert_eq!(e["memoryId"], id.as_str()),
            other => panic!(
                "after {:?} of listening without sending: {other:?}",
                started.elapsed()
            ),
        }
        n += 1;
    }
}

/// Resident memory of process `pid`: (VmRSS, VmHWM) in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Percentiles of `values` (sorted here).
fn percentiles(values: &mut [f64]) -> String {
    if values.is_empty() {
        return "no samples".into();
    }
    values.sort_by(f64::total_cmp);
    let at = |p: f64| values[((values.len() - 1) as f64 * p).round() as usize];
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0),
        values.len()
    )
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fan-out benchmark: 1,000 WebSocket subscribers on one space of a `memspace serve` child
/// process (the release binary with `--release`), 1,000 `createMemory` calls one after the
/// other; every subscriber must get every event, in order. Prints the fan-out latency (from
/// the mutation's response, and from the event's `at`) and the server's RSS. SQLite in a temp
/// dir, or PostgreSQL when `TEST_DATABASE_URL` is set. `BENCH_SUBSCRIBERS`, `BENCH_WRITES` and
/// `BENCH_RATE` (writes per second, 0 = back to back) change the load.
///
/// `cargo test --release --test api realtime::bench -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
async fn bench_fan_out_to_1000_subscribers() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::SystemTime;

    use crate::replicas::{fresh_pg_schema, Server};

    let subscribers = env_usize("BENCH_SUBSCRIBERS", 1000);
    let writes = env_usize("BENCH_WRITES", 1000);
    let rate = env_usize("BENCH_RATE", 0);
    let dir = tempfile::tempdir().expect("temp dir");
    let (database_url, backend) = match std::env::var("TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => (fresh_pg_schema(&base).await, "PostgreSQL"),
        _ => (
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("bench.db").display()
            ),
            "SQLite",
        ),
    };
    let admin_key = format!("bench-admin-key-{}", uuid::Uuid::now_v7().simple());
    let server = Server::start(
        "memspace-bench",
        &database_url,
        &admin_key,
        dir.path(),
        &[("MEMSPACE_LOG", "warn")],
    )
    .await;
    let pid = server.pid();
    let (rss_idle, _) = rss_mib(pid);
    let r = gql_at(
        &reqwest::Client::new(),
        &server.url,
        &admin_key,
        "mutation{ createSpace(input:{name:\"bench\"}){ id } }",
        json!({}),
    )
    .await;
    let space = r.data()["createSpace"]["id"].as_str().unwrap().to_string();
    let writer = Writer::new(&server.url, &admin_key, &space);

    // Subscribers: connect (100 at a time), subscribe, then record every event until the end
    // marker arrives.
    const QUERY: &str =
        "subscription($s:ID!){ memoryEvents(spaceId:$s){ kind memoryId at memory{ content } } }";
    let ready = Arc::new(AtomicUsize::new(0));
    let connecting = Arc::new(tokio::sync::Semaphore::new(100));
    let started_subscribing = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..subscribers {
        let (url, key, space) = (server.url.clone(), admin_key.clone(), space.clone());
        let (ready, connecting) = (ready.clone(), connecting.clone());
        tasks.push(tokio::spawn(async move {
            let mut ws = {
                let _permit = connecting.acquire().await.expect("semaphore");
                let mut ws = Ws::bearer(&url, &key).await;
                ws.subscribe_query("1", QUERY, &space).await;
                ws
            };
            let mut got: Vec<(String, SystemTime, String)> = Vec::new();
            let mut last_ping = Instant::now();
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                if last_ping.elapsed() > Duration::from_secs(10) {
                    ws.ping().await;
                    last_ping = Instant::now();
                }
                match ws.item("1", Duration::from_secs(5)).await {
                    Item::Event(e) => {
                        let received = SystemTime::now();
                        if got.is_empty() {
                            ready.fetch_add(1, Ordering::SeqCst);
                        }
                        if e["memory"]["content"] == "bench-end" {
                            return Ok(got);
                        }
                        got.push((
                            e["memoryId"].as_str().unwrap_or_default().to_string(),
                            received,
                            e["at"].as_str().unwrap_or_default().to_string(),
                        ));
                    }
                    Item::Timeout if Instant::now() < deadline => {}
                    other => return Err(format!("after {} events: {other:?}", got.len())),
                }
            }
        }));
    }
    let mut probes = 0;
    while ready.load(Ordering::SeqCst) < subscribers {
        assert!(
            started_subscribing.elapsed() < Duration::from_secs(120),
            "only {} of {subscribers} subscribers live",
            ready.load(Ordering::SeqCst)
        );
        writer.create(&format!("probe {probes}")).await;
        probes += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let subscribed_in = started_subscribing.elapsed();
    let (rss_subscribed, _) = rss_mib(pid);

    // Sample the server's RSS while the writes fan out.
    let sampling = Arc::new(AtomicUsize::new(1));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0.0f64;
            while sampling.load(Ordering::SeqCst) == 1 {
                peak = peak.max(rss_mib(pid).0);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    let started_writing = Instant::now();
    let mut responded: HashMap<String, (usize, SystemTime)> = HashMap::new();
    let mut write_ms = Vec::new();
    for i in 0..writes {
        if rate > 0 {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep(due.saturating_sub(started_writing.elapsed())).await;
        }
        let sent = Instant::now();
        let id = writer.create(&format!("bench event {i}")).await;
        write_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
        responded.insert(id, (i, SystemTime::now()));
    }
    let wrote_in = started_writing.elapsed();
    writer.create("bench-end").await;
    let mut from_response = Vec::with_capacity(subscribers * writes);
    let mut from_at = Vec::with_capacity(subscribers * writes);
    let mut failures = Vec::new();
    let mut early = 0usize;
    for task in tasks {
        match task.await.expect("subscriber task") {
            Err(e) => failures.push(e),
            Ok(got) => {
                let mine: Vec<_> = got
                    .iter()
                    .filter(|(id, _, _)| responded.contains_key(id))
                    .collect();
                let order: Vec<usize> = mine.iter().map(|(id, _, _)| responded[id].0).collect();
                if order != (0..writes).collect::<Vec<_>>() {
                    failures.push(format!(
                        "got {} of {writes} events, in order: {}",
                        order.len(),
                        order.windows(2).all(|w| w[0] < w[1])
                    ));
                }
                for (id, received, at) in mine {
                    let resp = responded[id].1;
                    match received.duration_since(resp) {
                        Ok(d) => from_response.push(d.as_secs_f64() * 1000.0),
                        Err(_) => {
                            early += 1;
                            from_response.push(0.0);
                        }
                    }
                    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(at) {
                        let received: chrono::DateTime<chrono::Utc> = (*received).into();
                        from_at.push(
                            (received - at.to_utc()).num_microseconds().unwrap_or(0) as f64
                                / 1000.0,
                        );
                    }
                }
            }
        }
    }
    let delivered_in = started_writing.elapsed();
    sampling.store(0, Ordering::SeqCst);
    let peak_rss = sampler.await.expect("sampler");
    let (rss_end, hwm) = rss_mib(pid);

    eprintln!("fan-out benchmark on {backend}: {subscribers} subscribers, {writes} createMemory calls back to back{}",
        if rate > 0 { format!(" at {rate}/s") } else { String::new() });
    eprintln!("  subscribed and live in {subscribed_in:?} ({probes} probe writes)");
    eprintln!(
        "  writes took {wrote_in:?} ({:.0}/s); mutation latency {}",
        writes as f64 / wrote_in.as_secs_f64(),
        percentiles(&mut write_ms)
    );
    eprintln!("  every event delivered to every subscriber after {delivered_in:?}");
    eprintln!(
        "  fan-out latency from the mutation's response: {} ({early} events arrived before the response)",
        percentiles(&mut from_response)
    );
    eprintln!(
        "  fan-out latency from the event's `at`:        {}",
        percentiles(&mut from_at)
    );
    eprintln!(
        "  server RSS: {rss_idle:.1} MiB idle, {rss_subscribed:.1} MiB with {subscribers} subscribers, \
         {peak_rss:.1} MiB peak sampled during writes, {rss_end:.1} MiB at the end (VmHWM {hwm:.1} MiB)"
    );
    assert!(
        failures.is_empty(),
        "{} of {subscribers} subscribers did not get every event in order; first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}
