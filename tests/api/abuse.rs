//! Issue 17 "Abuse-proof": a WebSocket is held to HTTP's rules (the credential's current state,
//! limits, timeout, rate limit, fresh loaders per operation), metrics labels stay bounded,
//! complexity counts what lists return, and slow or idle clients cannot hold connections.
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use sea_orm::TransactionTrait;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::common::TestApp;
use crate::realtime::{Item, Ws, EVENTS};

const WAIT: Duration = Duration::from_secs(10);

/// What one operation sent on a socket produced: its `next` payloads, then how it ended.
#[derive(Debug)]
enum Outcome {
    /// The payload of the (single) `next`, followed by `complete`.
    Done(Value),
    /// The socket closed first (with this close code).
    Closed(Option<u16>),
}

impl Outcome {
    fn payload(&self) -> &Value {
        match self {
            Outcome::Done(v) => v,
            Outcome::Closed(c) => panic!("the socket closed ({c:?}) instead of answering"),
        }
    }

    fn code(&self) -> String {
        self.payload()["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.payload()))
            .to_string()
    }

    fn data(&self) -> &Value {
        let p = self.payload();
        assert!(p["errors"].is_null(), "unexpected errors: {p}");
        &p["data"]
    }
}

/// Sends one query or mutation on `ws` under `id` and waits for its answer.
async fn op(ws: &mut Ws, id: &str, query: &str, variables: Value) -> Outcome {
    ws.send(json!({
        "id": id, "type": "subscribe",
        "payload": { "query": query, "variables": variables },
    }))
    .await;
    let mut payload = None;
    loop {
        match ws.frame(WAIT).await {
            None => panic!("no answer to {id} within {WAIT:?}"),
            Some(Err(code)) => return Outcome::Closed(code),
            Some(Ok(m)) => match m["type"].as_str() {
                Some("next") => payload = Some(m["payload"].clone()),
                Some("error") => payload = Some(json!({ "errors": m["payload"] })),
                Some("complete") => return Outcome::Done(payload.unwrap_or(Value::Null)),
                _ => panic!("unexpected message: {m}"),
            },
        }
    }
}

/// The close code the socket sends next (within `wait`); panics on anything else but errors.
async fn close_code(ws: &mut Ws, wait: Duration) -> Option<u16> {
    let deadline = Instant::now() + wait;
    loop {
        match ws
            .frame(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            None => panic!("the socket stayed open for {wait:?}"),
            Some(Err(code)) => return code,
            Some(Ok(m)) => eprintln!("before the close: {m}"),
        }
    }
}

async fn key_with_id(app: &TestApp, user_id: &str) -> (String, String) {
    let r = app
        .gql(
            "mutation($u:ID!){ createApiKey(input:{userId:$u,name:\"abuse\"}){ key apiKey{ id } } }",
            json!({ "u": user_id }),
        )
        .await;
    let k = &r.data()["createApiKey"];
    (
        k["key"].as_str().unwrap().to_string(),
        k["apiKey"]["id"].as_str().unwrap().to_string(),
    )
}

const VIEWER: &str = "{ viewer { principal { __typename } } }";
const CREATE_SPACE: &str = "mutation($n:String!){ createSpace(input:{name:$n}){ id } }";

// ---------------------------------------------------------------------------------------------
// Item 2: every operation on a socket sees the credential as it is now

#[tokio::test]
async fn a_revoked_api_key_stops_working_on_its_open_socket_which_closes_with_4403() {
    let app = TestApp::spawn().await;
    let (bob, _) = app.user("bob", false).await;
    let (bob_key, bob_key_id) = key_with_id(&app, &bob).await;
    let mut ws = Ws::bearer(&app.url, &bob_key).await;
    assert_eq!(
        op(&mut ws, "1", VIEWER, json!({})).await.data()["viewer"]["principal"]["__typename"],
        "User"
    );

    app.gql(
        "mutation($id:ID!){ revokeApiKey(id:$id) }",
        json!({ "id": bob_key_id }),
    )
    .await
    .data();

    // The socket is closed as soon as the revocation is announced; an operation sent in the
    // meantime is refused, never run with the old identity.
    let started = Instant::now();
    match op(&mut ws, "2", CREATE_SPACE, json!({ "n": "after-revoke" })).await {
        Outcome::Closed(code) => assert_eq!(code, Some(4403)),
        refused => {
            assert_eq!(refused.code(), "UNAUTHENTICATED");
            assert_eq!(close_code(&mut ws, WAIT).await, Some(4403));
        }
    }
    eprintln!("socket closed {:?} after the revocation", started.elapsed());
    let spaces = app
        .gql(
            "{ spaces(filter:{name:\"after-revoke\"}){ totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(spaces.data()["spaces"]["totalCount"], 0);
}

#[tokio::test]
async fn a_revoked_space_token_cannot_write_on_its_open_socket() {
    let app = TestApp::spawn().await;
    let (_, alice_key) = app.user("alice", false).await;
    let space = app.space_as(&alice_key, "tokened", json!({})).await;
    let (token_id, token) = app.space_token_as(&alice_key, &space, "EDIT", None).await;
    let mut ws = Ws::bearer(&app.url, &token).await;
    let write = "mutation($s:ID!,$c:String!){ createMemory(input:{spaceId:$s,content:$c}){ id } }";
    op(&mut ws, "1", write, json!({ "s": space, "c": "before" }))
        .await
        .data();

    app.gql_as(
        Some(&alice_key),
        "mutation($id:ID!){ revokeSpaceToken(id:$id) }",
        json!({ "id": token_id }),
    )
    .await
    .data();

    match op(&mut ws, "2", write, json!({ "s": space, "c": "after" })).await {
        Outcome::Closed(code) => assert_eq!(code, Some(4403)),
        refused => assert_eq!(refused.code(), "UNAUTHENTICATED"),
    }
    let count = app
        .gql_as(
            Some(&alice_key),
            "query($s:ID!){ space(id:$s){ memoryCount } }",
            json!({ "s": space }),
        )
        .await;
    assert_eq!(count.data()["space"]["memoryCount"], 1);
}

#[tokio::test]
async fn a_member_removed_from_a_workspace_loses_its_space_on_the_open_socket_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (bob, bob_key) = app.user("bob", false).await;
    let ws_id = app.workspace_as(&admin, "Team").await;
    app.gql(
        "mutation($w:ID!,$u:ID!){ addWorkspaceMember(workspaceId:$w,userId:$u,role:EDITOR){ role } }",
        json!({ "w": ws_id, "u": bob }),
    )
    .await
    .data();
    let space = app
        .space_as(
            &admin,
            "team-space",
            json!({ "workspaceId": ws_id, "accessMode": "PRIVATE" }),
        )
        .await;
    let mut ws = Ws::bearer(&app.url, &bob_key).await;
    let read = "query($s:ID!){ space(id:$s){ id } }";
    op(&mut ws, "1", read, json!({ "s": space })).await.data();

    app.gql(
        "mutation($w:ID!,$u:ID!){ removeWorkspaceMember(workspaceId:$w,userId:$u) }",
        json!({ "w": ws_id, "u": bob }),
    )
    .await
    .data();

    assert_eq!(
        op(&mut ws, "2", read, json!({ "s": space })).await.code(),
        "NOT_FOUND"
    );
    let write = "mutation($s:ID!){ createMemory(input:{spaceId:$s,content:\"x\"}){ id } }";
    assert_eq!(
        op(&mut ws, "3", write, json!({ "s": space })).await.code(),
        "NOT_FOUND"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 3: one limits path for both transports

#[tokio::test]
async fn a_socket_is_held_to_the_depth_alias_and_complexity_limits() {
    let app = TestApp::spawn().await;
    let mut ws = Ws::bearer(&app.url, &app.admin_key.clone()).await;
    let aliases: String = (0..201)
        .map(|i| format!("a{i}: viewer {{ __typename }} "))
        .collect();
    let r = op(&mut ws, "1", &format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(r.code(), "QUERY_TOO_COMPLEX");
    assert_eq!(r.payload()["errors"][0]["extensions"]["kind"], "aliases");

    // 13 fields deep (the limit is 12); the check runs before the schema is consulted.
    let deep = format!("{}b{}", "{ a ".repeat(13), " }".repeat(13));
    let r = op(&mut ws, "2", &deep, json!({})).await;
    assert_eq!(r.code(), "QUERY_TOO_COMPLEX", "{r:?}");
    assert_eq!(r.payload()["errors"][0]["extensions"]["kind"], "depth");

    let searches: String = (0..60)
        .map(|i| format!("s{i}: searchMemories(input:{{query:\"x\",limit:1}}){{ score }} "))
        .collect();
    let r = op(&mut ws, "3", &format!("{{ {searches} }}"), json!({})).await;
    assert_eq!(r.code(), "QUERY_TOO_COMPLEX");
    assert_eq!(r.payload()["errors"][0]["extensions"]["kind"], "complexity");
    // The socket still works afterwards.
    op(&mut ws, "4", VIEWER, json!({})).await.data();
}

#[tokio::test]
async fn a_socket_is_held_to_the_rate_limit_of_its_key() {
    let app = TestApp::spawn_with(|c| c.rate_limit = Some((2, 2))).await;
    let mut ws = Ws::bearer(&app.url, &app.admin_key.clone()).await;
    let mut limited = 0;
    for i in 0..10 {
        let r = op(&mut ws, &i.to_string(), VIEWER, json!({})).await;
        if r.payload()["errors"].is_array() {
            assert_eq!(r.code(), "RATE_LIMITED");
            limited += 1;
        }
    }
    assert!(limited >= 5, "only {limited} of 10 were rate limited");
}

#[tokio::test]
async fn a_socket_operation_over_the_timeout_is_cancelled_and_commits_nothing() {
    let (app, hurried) =
        TestApp::spawn_pair_with(|c| c.request_timeout = Duration::from_millis(1)).await;
    let space = app
        .space_as(&app.admin_key.clone(), "ws-timeout", json!({}))
        .await;
    let inputs: Vec<Value> = (0..1000)
        .map(|i| json!({ "content": format!("timed out memory number {i} with some words") }))
        .collect();
    let mut ws = Ws::bearer(&hurried.url, &hurried.admin_key.clone()).await;
    let r = op(
        &mut ws,
        "1",
        "mutation($s:ID!,$i:[MemoryInput!]!){ createMemories(spaceId:$s,inputs:$i){ id } }",
        json!({ "s": space, "i": inputs }),
    )
    .await;
    assert_eq!(r.code(), "TIMEOUT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let count = app
        .gql(
            "query($s:ID!){ space(id:$s){ memoryCount } }",
            json!({ "s": space }),
        )
        .await;
    assert_eq!(count.data()["space"]["memoryCount"], 0);
}

#[tokio::test]
async fn a_thousand_aliased_searches_on_a_socket_are_refused_and_other_users_stay_fast() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (_, other_key) = app.user("other", false).await;
    let space = app.space_as(&admin, "searched", json!({})).await;
    let contents: Vec<String> = (0..200)
        .map(|i| format!("memory {i} about searching and ranking words"))
        .collect();
    app.memories_as(&admin, &space, &contents).await;
    let searches: String = (0..1000)
        .map(|i| format!("s{i}: searchMemories(input:{{query:\"words\",limit:100}}){{ memory{{ content }} }} "))
        .collect();
    let query = format!("{{ {searches} }}");
    let mut ws = Ws::bearer(&app.url, &admin).await;

    let attack = async {
        for i in 0..20 {
            let r = op(&mut ws, &i.to_string(), &query, json!({})).await;
            assert_eq!(r.code(), "QUERY_TOO_COMPLEX");
        }
    };
    let others = async {
        let mut times = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            app.gql_as(Some(&other_key), VIEWER, json!({})).await.data();
            times.push(started.elapsed());
        }
        times.sort();
        (times[times.len() * 9 / 10], times[times.len() * 99 / 100])
    };
    let ((), (p90, p99)) = tokio::join!(attack, others);
    eprintln!(
        "other user's p90 {p90:?}, p99 {p99:?} while the socket sent 20 × 1,000 aliased searches"
    );
    // Unrefused, the searches held other users for seconds (4.8 s in the issue). The p90 is
    // asserted: one stall of the test machine (the suite runs beside it) must not fail it.
    assert!(p90 < Duration::from_secs(1), "p90 {p90:?} (p99 {p99:?})");
}

// ---------------------------------------------------------------------------------------------
// Item 4: bounded metrics labels

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn unauthenticated_and_endless_operation_names_do_not_grow_the_metrics() {
    let app = TestApp::spawn().await;
    let before = metrics(&app).await.len();
    let started = Instant::now();
    futures::stream::iter(0..5000)
        .for_each_concurrent(16, |i| {
            let app = &app;
            async move {
                let r = app
                    .gql_as(
                        None,
                        &format!("query Unauth{i} {{ viewer {{ __typename }} }}"),
                        json!({}),
                    )
                    .await;
                assert_eq!(r.status, 401);
            }
        })
        .await;
    let after_unauth = metrics(&app).await;
    eprintln!(
        "/metrics: {before} bytes before, {} after 5,000 unauthenticated names ({:?})",
        after_unauth.len(),
        started.elapsed()
    );
    assert!(
        !after_unauth.contains("Unauth1"),
        "an unauthenticated name became a label"
    );
    assert!(after_unauth.contains("operation=\"unauthenticated\""));
    assert!(after_unauth.len() < before + 4096);

    // With a key, names are kept up to the cap; later ones fold into `other`.
    for i in 0..300 {
        app.gql(
            &format!("query Named{i} {{ viewer {{ __typename }} }}"),
            json!({}),
        )
        .await
        .data();
    }
    let after_named = metrics(&app).await;
    let labelled = (0..300)
        .filter(|i| after_named.contains(&format!("operation=\"Named{i}\"")))
        .count();
    assert!(labelled <= 200, "{labelled} names became labels");
    assert!(after_named.contains("operation=\"other\""));
}

// ---------------------------------------------------------------------------------------------
// Item 5: complexity counts `limit` and unpaginated lists; responses are capped

#[tokio::test]
async fn many_searches_in_one_request_are_query_too_complex_and_a_huge_response_is_refused() {
    let app = TestApp::spawn_with(|c| c.max_response_bytes = 64 * 1024).await;
    let admin = app.admin_key.clone();
    let searches: String = (0..60)
        .map(|i| format!("s{i}: searchMemories(input:{{query:\"x\",limit:1}}){{ score }} "))
        .collect();
    let r = app.gql(&format!("{{ {searches} }}"), json!({})).await;
    assert_eq!(r.code(), "QUERY_TOO_COMPLEX");
    assert_eq!(r.error()["extensions"]["kind"], "complexity");

    let grants =
        "{ spaces(first: 1000) { edges { node { grants { id permission subjectId } } } } }";
    assert_eq!(app.gql(grants, json!({})).await.code(), "QUERY_TOO_COMPLEX");

    let space = app.space_as(&admin, "big", json!({})).await;
    let contents: Vec<String> = (0..20)
        .map(|i| format!("{i} {}", "word ".repeat(1000)))
        .collect();
    app.memories_as(&admin, &space, &contents).await;
    let page = "query($s:ID!){ space(id:$s){ memories(first:100){ edges{ node{ content } } } } }";
    let r = app.gql(page, json!({ "s": space })).await;
    assert_eq!(r.code(), "PAYLOAD_TOO_LARGE");
    assert_eq!(r.error()["extensions"]["kind"], "response");
    let mut ws = Ws::bearer(&app.url, &admin).await;
    let over_ws = op(&mut ws, "1", page, json!({ "s": space })).await;
    assert_eq!(over_ws.code(), "PAYLOAD_TOO_LARGE");
}

// ---------------------------------------------------------------------------------------------
// Item 8: loaders per operation, never per connection

#[tokio::test]
async fn a_query_repeated_on_one_socket_and_successive_events_see_current_tags_and_counts() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let space = app.space_as(&admin, "fresh", json!({})).await;
    let memory = app
        .memory_as(&admin, &space, "first", json!({ "tags": ["old"] }))
        .await;
    let mut ws = Ws::bearer(&app.url, &admin).await;
    let read = "query($m:ID!){ memory(id:$m){ tags space{ memoryCount } } }";
    let first = op(&mut ws, "1", read, json!({ "m": memory })).await;
    assert_eq!(first.data()["memory"]["tags"], json!(["old"]));

    app.gql(
        "mutation($m:ID!){ updateMemory(id:$m,input:{tags:[\"new\"]}){ id } }",
        json!({ "m": memory }),
    )
    .await
    .data();
    app.memory_as(&admin, &space, "second", json!({})).await;
    let again = op(&mut ws, "2", read, json!({ "m": memory })).await;
    assert_eq!(again.data()["memory"]["tags"], json!(["new"]));
    assert_eq!(again.data()["memory"]["space"]["memoryCount"], 2);

    // Events: each carries the space's count as of that event.
    ws.subscribe_query(
        "sub",
        "subscription($s:ID!){ memoryEvents(spaceId:$s){ kind memory{ tags space{ memoryCount } } } }",
        &space,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut counts = Vec::new();
    for i in 0..3 {
        app.memory_as(
            &admin,
            &space,
            &format!("event {i}"),
            json!({ "tags": [format!("t{i}")] }),
        )
        .await;
        let e = match ws.item("sub", WAIT).await {
            Item::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        };
        assert_eq!(e["memory"]["tags"], json!([format!("t{i}")]));
        counts.push(e["memory"]["space"]["memoryCount"].as_i64().unwrap());
    }
    assert_eq!(counts, [3, 4, 5]);
}

// ---------------------------------------------------------------------------------------------
// Item 16: slow clients, idle sockets, subscription caps, batched re-checks

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let app = TestApp::spawn_with(|c| c.header_read_timeout = Duration::from_secs(1)).await;
    let addr = app.url.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        s.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        slow.push(s);
    }
    let started = Instant::now();
    for mut s in slow {
        let mut buf = [0u8; 1024];
        // Closed (EOF or reset, perhaps after a 408) well before the 30 s a client could wait.
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => continue,
                Err(_) => panic!("a connection without complete headers stayed open"),
            }
        }
    }
    eprintln!("20 slow connections closed within {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5));
    // Ordinary requests still work.
    app.gql(VIEWER, json!({})).await.data();
}

/// A raw graphql-transport-ws socket on `/graphql/ws`, before any message.
async fn transport_ws_socket(
    app: &TestApp,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("{}/graphql/ws", app.url.replacen("http", "ws", 1));
    let mut request = url.as_str().into_client_request().expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (stream, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("handshake");
    stream
}

#[tokio::test]
async fn a_websocket_without_connection_init_is_closed_with_4408() {
    let app = TestApp::spawn_with(|c| c.ws_init_timeout = Duration::from_millis(500)).await;
    let mut stream = transport_ws_socket(&app).await;
    let started = Instant::now();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Err(_) => panic!("the socket stayed open without connection_init"),
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(_) => break None,
        }
    };
    assert_eq!(code, Some(4408));
    assert!(started.elapsed() < Duration::from_secs(3));
    let _ = stream.send(Message::Close(None)).await;
}

/// Opens a graphql-transport-ws socket, sends `connection_init` with `Bearer <key>` and returns
/// the close frame's code and reason (None when `connection_ack` came instead).
async fn init_outcome(app: &TestApp, key: &str) -> Option<(u16, String)> {
    let mut stream = transport_ws_socket(app).await;
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } });
    stream
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("send connection_init");
    loop {
        match tokio::time::timeout(WAIT, stream.next()).await {
            Err(_) => panic!("connection_init was not answered within {WAIT:?}"),
            Ok(Some(Ok(Message::Close(frame)))) => {
                let frame = frame.expect("a close frame with a code");
                return Some((u16::from(frame.code), frame.reason.to_string()));
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                let m: Value = serde_json::from_str(&text).expect("JSON");
                assert_eq!(m["type"], "connection_ack", "unexpected message: {m}");
                let _ = stream.send(Message::Close(None)).await;
                return None;
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("the socket ended without a close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn connection_init_closes_with_1013_when_the_database_cannot_check_the_credential_and_4403_when_it_is_bad(
) {
    let app = TestApp::spawn_with(|c| c.ws_init_timeout = Duration::from_secs(1)).await;
    let (bob, _) = app.user("bob", false).await;
    let (bob_key, _) = key_with_id(&app, &bob).await;
    assert_eq!(
        init_outcome(&app, "not-a-key").await.map(|(c, _)| c),
        Some(4403)
    );

    // Every connection of the server's read pool is held by an open transaction, so the
    // look-up of a credential not yet cached cannot get one before its bound runs out.
    let mut held = Vec::new();
    while held.len() < 64 {
        match tokio::time::timeout(Duration::from_secs(1), app.db.read.begin()).await {
            Ok(Ok(txn)) => held.push(txn),
            _ => break,
        }
    }
    assert!(!held.is_empty() && held.len() < 64, "the pool is bounded");
    let started = Instant::now();
    let (code, reason) = init_outcome(&app, &bob_key)
        .await
        .expect("connection_init cannot be acknowledged while the database stalls");
    assert_eq!(
        code, 1013,
        "Try Again Later, not a refusal of the credential"
    );
    assert!(!reason.is_empty(), "the close frame says why");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A bad credential that the server cannot check either gets the same 1013: it is not
    // known to be bad.
    assert_eq!(
        init_outcome(&app, "not-a-key-either").await.map(|(c, _)| c),
        Some(1013)
    );

    drop(held);
    assert_eq!(
        init_outcome(&app, &bob_key).await,
        None,
        "the same key works again"
    );
    assert_eq!(
        init_outcome(&app, "not-a-key").await.map(|(c, _)| c),
        Some(4403)
    );
}

#[tokio::test]
async fn subscriptions_are_capped_per_connection_and_per_key() {
    let app = TestApp::spawn_with(|c| {
        c.max_subscriptions_per_connection = 3;
        c.max_subscriptions_per_key = 5;
    })
    .await;
    let admin = app.admin_key.clone();
    let space = app.space_as(&admin, "capped", json!({})).await;
    let mut first = Ws::bearer(&app.url, &admin).await;
    for i in 0..4 {
        first.subscribe(&format!("s{i}"), &space).await;
    }
    assert_eq!(refusals(&mut first).await, 1, "4 on a socket capped at 3");
    let mut second = Ws::bearer(&app.url, &admin).await;
    for i in 0..3 {
        second.subscribe(&format!("t{i}"), &space).await;
    }
    assert_eq!(
        refusals(&mut second).await,
        1,
        "3 + 3 for a key capped at 5"
    );
    // Closing a socket gives its places back.
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.subscribe("t3", &space).await;
    assert_eq!(refusals(&mut second).await, 0);
}

/// How many subscriptions were refused with RATE_LIMITED in the next second.
async fn refusals(ws: &mut Ws) -> usize {
    let mut refused = 0;
    while let Some(Ok(m)) = ws.frame(Duration::from_secs(1)).await {
        if m["payload"]["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
            || m["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
        {
            refused += 1;
        }
    }
    refused
}

#[tokio::test]
async fn an_access_change_rechecks_many_subscribers_of_one_key_and_space_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (carol, _) = app.user("carol", false).await;
    let (dave, _) = app.user("dave", false).await;
    let space = app.space_as(&admin, "watched", json!({})).await;
    let share = |space: String, user: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            // Start from a quiet server: under load the subscriptions' own start-up queries
            // can still be running after a fixed sleep and would be counted as the re-check.
            app.settle().await;
            let before = app.statements();
            app.share_as(
                &admin,
                &space,
                json!([{ "subjectKind": "USER", "subjectId": user, "permission": "VIEW" }]),
            )
            .await
            .data();
            tokio::time::sleep(Duration::from_millis(800)).await;
            app.statements() - before
        }
    };
    // Before anyone subscribes: what the mutation costs by itself.
    let alone = share(space.clone(), carol).await;
    let mut ws = Ws::bearer(&app.url, &admin).await;
    for i in 0..50 {
        ws.subscribe_query(&format!("s{i}"), EVENTS, &space).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let watched = share(space, dave).await;
    eprintln!("shareSpace: {alone} statements alone, {watched} with 50 subscribers of one key");
    // Unbatched, each of the 50 re-authenticated and re-loaded the space: 300+ statements.
    assert!(
        watched > alone,
        "the subscribers were not re-checked at all"
    );
    assert!(watched < alone + 20, "{watched} statements vs {alone}");
}
