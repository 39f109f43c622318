//! Transport details mainstream clients rely on: subscriptions on the same URL as queries
//! (`ws://…/graphql`, graphql-transport-ws and the legacy graphql-ws) behind the same gate as
//! `/graphql/ws`; `connection_init` with `{headers: {Authorization}}`; a trace id on every
//! socket error; GraphiQL's assets compressed only for clients that accept gzip, its first tab
//! a working Memspace example and its advice for a newcomer without a key; `schema.graphql`
//! equal to a full introspection of the running server (built with graphql-js); response keys
//! in selection order; the `JSON` scalar's `@specifiedBy`; the consistent names of the README's
//! "Schema conventions" beside the deprecated ones they replace.
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::TestApp;
use crate::realtime::{await_live, Item, Writer, Ws};

const WAIT: Duration = Duration::from_secs(5);

/// A raw WebSocket to `path` offering `protocol`; returns it with the protocol the server chose.
async fn raw(
    base: &str,
    path: &str,
    protocol: &'static str,
) -> (WebSocketStream<MaybeTlsStream<TcpStream>>, Option<String>) {
    let url = format!("{}{path}", base.replacen("http", "ws", 1));
    let mut request = url.as_str().into_client_request().expect("ws request");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
    let (stream, response) = tokio_tungstenite::connect_async(request)
        .await
        .unwrap_or_else(|e| panic!("no WebSocket handshake on {path}: {e}"));
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (stream, chosen)
}

async fn send(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>, message: Value) {
    ws.send(Message::Text(message.to_string().into()))
        .await
        .expect("websocket send");
}

/// The next JSON message (skipping keepalives), or `Err(close code)`.
async fn next_json(
    ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>,
) -> Result<Value, Option<u16>> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => panic!("nothing arrived within {WAIT:?}"),
            Ok(None) | Ok(Some(Err(_))) => return Err(None),
            Ok(Some(Ok(Message::Close(frame)))) => return Err(frame.map(|f| u16::from(f.code))),
            Ok(Some(Ok(Message::Text(text)))) => {
                let v: Value = serde_json::from_str(&text).expect("JSON message");
                if v["type"] == "ka" || v["type"] == "ping" || v["type"] == "pong" {
                    continue;
                }
                return Ok(v);
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// The next close code on `ws` (errors and other messages before it are skipped).
async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match ws.frame(WAIT).await {
            None => panic!("the socket stayed open"),
            Some(Err(code)) => return code,
            Some(Ok(_)) => continue,
        }
    }
}

fn is_trace_id(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Every error of a `next`/`error`/`connection_error` message: (code, has a trace id).
fn errors_of(m: &Value) -> Vec<(String, bool)> {
    let errors = match &m["payload"] {
        Value::Array(list) => list.clone(),
        p if p["errors"].is_array() => p["errors"].as_array().cloned().unwrap_or_default(),
        p if p.is_object() => vec![p.clone()],
        _ => vec![],
    };
    errors
        .iter()
        .map(|e| {
            (
                e["extensions"]["code"].as_str().unwrap_or("").to_string(),
                is_trace_id(&e["extensions"]["traceId"]),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_websocket_upgrade_on_graphql_serves_subscriptions_like_graphql_ws() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let space = app.space_as(&key, "same-url", json!({})).await;
    for path in ["/graphql", "/graphql/ws"] {
        let mut ws = Ws::open_on(
            &app.url,
            path,
            json!({ "authorization": format!("Bearer {key}") }),
        )
        .await;
        match ws.frame(WAIT).await {
            Some(Ok(m)) if m["type"] == "connection_ack" => {}
            other => panic!("{path}: expected connection_ack, got {other:?}"),
        }
        ws.subscribe("s", &space).await;
        let writer = Writer::new(&app.url, &key, &space);
        await_live(&mut ws, "s", &writer).await;
        let id = writer.create(&format!("through {path}")).await;
        let event = ws.event("s", WAIT).await;
        assert_eq!(event["kind"], "CREATED", "{path}");
        assert_eq!(event["memoryId"], id.as_str(), "{path}");
    }
}

#[tokio::test]
async fn get_graphql_without_an_upgrade_still_serves_graphiql_and_queries() {
    let app = TestApp::spawn().await;
    let page = app
        .client
        .get(format!("{}/graphql", app.url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("GraphiQL"));
    let query = app
        .client
        .get(format!("{}/graphql?query=%7B__typename%7D", app.url))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 200);
    let body: Value = query.json().await.unwrap();
    assert_eq!(body, json!({ "data": { "__typename": "Query" } }));
}

#[tokio::test]
async fn the_legacy_graphql_ws_subprotocol_is_served_on_graphql_too() {
    let app = TestApp::spawn().await;
    for path in ["/graphql", "/graphql/ws"] {
        let (mut ws, chosen) = raw(&app.url, path, "graphql-ws").await;
        assert_eq!(chosen.as_deref(), Some("graphql-ws"), "{path}");
        let init = json!({ "authorization": format!("Bearer {}", app.admin_key) });
        send(
            &mut ws,
            json!({ "type": "connection_init", "payload": init }),
        )
        .await;
        assert_eq!(next_json(&mut ws).await.unwrap()["type"], "connection_ack");
        send(
            &mut ws,
            json!({ "id": "1", "type": "start", "payload": { "query": "{ __typename }" } }),
        )
        .await;
        let data = next_json(&mut ws).await.unwrap();
        assert_eq!(data["type"], "data", "{path}: {data}");
        assert_eq!(data["payload"]["data"]["__typename"], "Query");
        assert_eq!(next_json(&mut ws).await.unwrap()["type"], "complete");
    }
}

#[tokio::test]
async fn both_websocket_paths_refuse_a_bad_key_with_4403() {
    let app = TestApp::spawn().await;
    for path in ["/graphql", "/graphql/ws"] {
        let mut ws = Ws::open_on(
            &app.url,
            path,
            json!({ "authorization": "Bearer not-a-key" }),
        )
        .await;
        assert_eq!(close_code(&mut ws).await, Some(4403), "{path}");
        let mut ws = Ws::open_on(&app.url, path, json!({})).await;
        assert_eq!(
            close_code(&mut ws).await,
            Some(4403),
            "{path} without a key"
        );
    }
}

#[tokio::test]
async fn both_websocket_paths_close_a_socket_without_connection_init_with_4408() {
    let app = TestApp::spawn_with(|c| c.ws_init_timeout = Duration::from_millis(300)).await;
    for path in ["/graphql", "/graphql/ws"] {
        let (mut ws, chosen) = raw(&app.url, path, "graphql-transport-ws").await;
        assert_eq!(chosen.as_deref(), Some("graphql-transport-ws"));
        assert_eq!(next_json(&mut ws).await, Err(Some(4408)), "{path}");
    }
}

#[tokio::test]
async fn both_websocket_paths_hold_the_subscription_cap_and_the_rate_limit() {
    let app = TestApp::spawn_with(|c| {
        c.max_subscriptions_per_connection = 1;
        c.rate_limit = Some((2, 2));
    })
    .await;
    let key = app.admin_key.clone();
    let space = app.space_as(&key, "capped", json!({})).await;
    for path in ["/graphql", "/graphql/ws"] {
        // Past the rate limit's burst the next operations are refused.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut ws = Ws::open_on(
            &app.url,
            path,
            json!({ "authorization": format!("Bearer {key}") }),
        )
        .await;
        assert_eq!(
            ws.frame(WAIT).await.unwrap().unwrap()["type"],
            "connection_ack"
        );
        ws.subscribe("a", &space).await;
        ws.subscribe("b", &space).await;
        let mut refused = Vec::new();
        while let Some(Ok(m)) = ws.frame(Duration::from_millis(1500)).await {
            for (code, traced) in errors_of(&m) {
                assert!(traced, "{path}: an error without a trace id: {m}");
                refused.push((
                    code,
                    m["payload"]["errors"][0]["extensions"]["kind"].clone(),
                ));
            }
        }
        assert_eq!(
            refused,
            [(
                "RATE_LIMITED".to_string(),
                json!("subscriptions per connection")
            )],
            "{path}: the second subscription is over the cap"
        );
        let mut limited = 0;
        for i in 0..10 {
            ws.send(json!({ "id": format!("q{i}"), "type": "subscribe",
                "payload": { "query": "{ __typename }" } }))
                .await;
        }
        while let Some(Ok(m)) = ws.frame(Duration::from_millis(1500)).await {
            if errors_of(&m).iter().any(|(c, _)| c == "RATE_LIMITED") {
                limited += 1;
            }
        }
        assert!(
            limited >= 5,
            "{path}: only {limited} of 10 operations were rate limited"
        );
    }
}

#[tokio::test]
async fn connection_init_takes_the_key_in_headers_as_apollo_and_hasura_send_it() {
    let app = TestApp::spawn().await;
    let space = app
        .space_as(&app.admin_key.clone(), "headers-init", json!({}))
        .await;
    for init in [
        json!({ "headers": { "Authorization": format!("Bearer {}", app.admin_key) } }),
        json!({ "headers": { "x-api-key": app.admin_key } }),
    ] {
        let mut ws = Ws::connect(&app.url, init.clone()).await;
        ws.subscribe("s", &space).await;
        let writer = Writer::new(&app.url, &app.admin_key, &space);
        await_live(&mut ws, "s", &writer).await;
    }
    let mut ws = Ws::open(
        &app.url,
        json!({ "headers": { "Authorization": "Bearer not-a-key" } }),
    )
    .await;
    assert_eq!(close_code(&mut ws).await, Some(4403));
}

#[tokio::test]
async fn every_error_on_a_socket_carries_a_trace_id() {
    let app = TestApp::spawn().await;
    let mut ws = Ws::bearer(&app.url, &app.admin_key.clone()).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    // An invisible space, a query that does not validate, one that does not parse.
    ws.subscribe("missing", &unknown).await;
    match ws.item("missing", WAIT).await {
        Item::Error(codes, m) => {
            assert_eq!(codes, ["NOT_FOUND"]);
            assert!(errors_of(&m).iter().all(|(_, t)| *t), "no trace id: {m}");
        }
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    for (id, query) in [
        (
            "invalid",
            "subscription { memoryEvents(spaceId: 1) { nope } }",
        ),
        ("unparsable", "subscription { memoryEvents("),
    ] {
        ws.subscribe_query(id, query, &unknown).await;
        let mut seen = false;
        while let Some(Ok(m)) = ws.frame(Duration::from_millis(800)).await {
            if m["id"] != id {
                continue; // the `complete` of the one before
            }
            if m["type"] == "complete" {
                break;
            }
            let errors = errors_of(&m);
            assert!(!errors.is_empty(), "{id}: {m}");
            assert!(errors.iter().all(|(c, t)| *t && !c.is_empty()), "{id}: {m}");
            seen = true;
        }
        assert!(seen, "{id}: no error arrived");
    }
    // The legacy protocol reports a refused key in a `connection_error` message.
    let (mut legacy, _) = raw(&app.url, "/graphql", "graphql-ws").await;
    send(
        &mut legacy,
        json!({ "type": "connection_init", "payload": { "authorization": "Bearer nope" } }),
    )
    .await;
    let m = next_json(&mut legacy)
        .await
        .expect("a connection_error message");
    assert_eq!(m["type"], "connection_error", "{m}");
    assert_eq!(
        errors_of(&m),
        [("UNAUTHENTICATED".to_string(), true)],
        "{m}"
    );
}

// ---- GraphiQL ----

async fn asset(app: &TestApp, file: &str, accept_encoding: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(format!("{}/graphql/assets/{file}", app.url));
    if let Some(ae) = accept_encoding {
        request = request.header("accept-encoding", ae);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn graphiql_assets_are_gzip_only_for_clients_that_accept_it() {
    let app = TestApp::spawn().await;
    for file in [
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
    ] {
        let zipped = asset(&app, file, Some("gzip, deflate, br")).await;
        assert_eq!(zipped.status(), 200);
        assert_eq!(zipped.headers()["content-encoding"], "gzip", "{file}");
        assert_eq!(zipped.headers()["vary"], "accept-encoding", "{file}");
        let zipped = zipped.bytes().await.unwrap();
        assert_eq!(&zipped[..2], &[0x1f, 0x8b], "{file}: not gzip");
        for accept in [None, Some("identity"), Some("br, gzip;q=0")] {
            let plain = asset(&app, file, accept).await;
            assert_eq!(plain.status(), 200);
            assert!(
                plain.headers().get("content-encoding").is_none(),
                "{file} with {accept:?}: compressed for a client that did not accept it"
            );
            assert_eq!(plain.headers()["vary"], "accept-encoding", "{file}");
            let text = String::from_utf8(plain.bytes().await.unwrap().to_vec())
                .unwrap_or_else(|_| panic!("{file} with {accept:?}: not text"));
            assert!(text.len() > zipped.len(), "{file}");
        }
    }
    let missing = asset(&app, "nope.js", None).await;
    assert_eq!(missing.status(), 404);
}

async fn graphiql_page(app: &TestApp) -> String {
    app.client
        .get(format!("{}/graphql", app.url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The example the page opens on: `{query, variables, headers}`.
fn example_of(page: &str) -> Value {
    let start = page
        .find(r#"<script id="memspace-example" type="application/json">"#)
        .expect("the page has no memspace-example block");
    let rest = &page[start..];
    let body = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
    serde_json::from_str(body).expect("the example is JSON")
}

#[tokio::test]
async fn graphiql_opens_on_a_memspace_example_that_runs_as_written() {
    let app = TestApp::spawn().await;
    let page = graphiql_page(&app).await;
    let example = example_of(&page);
    assert!(page.contains("defaultQuery: example.query"));
    assert!(page.contains("defaultTabs: [{ query: example.query"));
    let query = example["query"].as_str().unwrap();
    let mut variables: Value = serde_json::from_str(example["variables"].as_str().unwrap())
        .expect("the example's variables are JSON");
    let headers: Value = serde_json::from_str(example["headers"].as_str().unwrap()).unwrap();
    assert!(headers["Authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer "));
    // As GraphiQL sends it: the whole document and every variable, one operation at a time.
    let run = |name: &'static str, variables: Value| {
        let app = &app;
        async move {
            let body: Value = app
                .client
                .post(format!("{}/graphql", app.url))
                .bearer_auth(&app.admin_key)
                .json(&json!({ "query": query, "variables": variables, "operationName": name }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(body["errors"].is_null(), "{name}: {body}");
            body["data"].clone()
        }
    };
    let viewer = run("Viewer", variables.clone()).await;
    assert_eq!(viewer["viewer"]["principal"]["__typename"], "User");
    let space = run("CreateSpace", variables.clone()).await;
    let space_id = space["createSpace"]["id"].as_str().unwrap().to_string();
    variables["spaceId"] = json!(space_id);
    let memory = run("Remember", variables.clone()).await;
    let memory_id = memory["createMemory"]["id"].as_str().unwrap().to_string();
    let hits = run("Search", variables).await;
    let found: Vec<&str> = hits["searchMemories"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["memory"]["id"].as_str())
        .collect();
    assert!(found.contains(&memory_id.as_str()), "{hits}");
}

#[tokio::test]
async fn graphiql_tells_a_newcomer_without_a_key_how_to_get_one() {
    let app = TestApp::spawn().await;
    let page = graphiql_page(&app).await;
    let banner_at = page
        .find(r#"<div id="memspace-no-key""#)
        .expect("no key banner");
    let banner = &page[banner_at..banner_at + page[banner_at..].find("</div>").unwrap()];
    for needed in [
        "MEMSPACE_ADMIN_KEY",
        "createApiKey",
        "Authorization",
        "Bearer",
        "admin create-key",
    ] {
        assert!(
            banner.contains(needed),
            "the banner does not mention {needed}"
        );
    }
    // The page's script, run under node with stand-ins for the DOM, React and GraphiQL:
    // without a key it answers itself with the advice and sends nothing; a key typed into
    // the Headers pane hides the banner and renders GraphiQL again (the docs pane refetches).
    if node_is_usable() {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/graphiql/newcomer.mjs");
        let mut node = std::process::Command::new("node");
        node.arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let out = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = node.spawn().expect("node runs");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(page.as_bytes())
                .unwrap();
            child.wait_with_output().expect("node finishes")
        })
        .await
        .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && report.trim() == "ok", "{report}");
    }
    // The page itself needs no key; the server still refuses a keyless query.
    let r = app.gql_as(None, "{ __typename }", json!({})).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "UNAUTHENTICATED");
}

// ---- schema.graphql ----

fn find_on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(binary).is_file()))
}

/// Whether node and npm are installed; when not, a test that needs them is skipped, unless
/// MEMSPACE_REQUIRE_NODE is set (as in CI), where that is a failure.
fn node_is_usable() -> bool {
    if find_on_path("node") && find_on_path("npm") {
        return true;
    }
    assert!(
        std::env::var_os("MEMSPACE_REQUIRE_NODE").is_none(),
        "MEMSPACE_REQUIRE_NODE is set but node/npm are not installed"
    );
    eprintln!("skipping the node part: node and npm are not installed");
    false
}

#[tokio::test]
async fn schema_graphql_equals_a_full_introspection_of_the_running_server() {
    if !node_is_usable() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/schema-check");
    if !dir.join("node_modules/graphql").is_dir() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci in tests/schema-check failed");
    }
    let app = TestApp::spawn().await;
    // The live schema has the scalars' specifications.
    let r = app
        .gql(
            r#"{ __type(name: "DateTime") { specifiedByURL } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        r.data()["__type"]["specifiedByURL"],
        "https://datatracker.ietf.org/doc/html/rfc3339"
    );
    let mut node = std::process::Command::new("node");
    node.arg(dir.join("compare.mjs"))
        .arg(root.join("schema.graphql"))
        .arg(format!("{}/graphql", app.url))
        .arg(&app.admin_key);
    let out = tokio::task::spawn_blocking(move || node.output())
        .await
        .unwrap()
        .expect("node runs");
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "schema.graphql differs from the server:\n{report}"
    );
    assert!(report.contains("equals the live schema"));
}

// ---- response key order ----

/// A JSON value that keeps its objects' key order (serde_json's map sorts them).
#[derive(Debug)]
enum Ordered {
    Object(Vec<(String, Ordered)>),
    List(Vec<Ordered>),
    Other,
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Ordered>()? {
                    entries.push((k, v));
                }
                Ok(Ordered::Object(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element::<Ordered>()? {
                    items.push(v);
                }
                Ok(Ordered::List(items))
            }
            fn visit_str<E>(self, _: &str) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl Ordered {
    fn keys(&self) -> Vec<&str> {
        match self {
            Ordered::Object(entries) => entries.iter().map(|(k, _)| k.as_str()).collect(),
            other => panic!("not an object: {other:?}"),
        }
    }
    fn get(&self, key: &str) -> &Ordered {
        match self {
            Ordered::Object(entries) => entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no {key}")),
            other => panic!("not an object: {other:?}"),
        }
    }
    fn items(&self) -> &[Ordered] {
        match self {
            Ordered::List(items) => items,
            other => panic!("not a list: {other:?}"),
        }
    }
}

const SHAPE: &str = "query Shape($skip: Boolean!) {
  viewer {
    roles { name id }
    principal { ... on User { name id __typename } ... on Agent { id } }
    organization { ...Org }
    departments { name id }
    __typename
  }
  me: viewer { __typename departments { id } organization { id } }
  spaces(first: 3) {
    totalCount
    edges { node { memoryCount name skipped: id @skip(if: $skip) id __typename } cursor }
    pageInfo { hasNextPage endCursor }
  }
  __typename
}
fragment Org on Organization { name handle id }";

#[tokio::test]
async fn response_keys_follow_the_selection_order_on_every_run() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let me = app
        .gql("{ viewer { principal { ... on User { id } } } }", json!({}))
        .await;
    let me = me.data()["viewer"]["principal"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for name in ["r1", "r2"] {
        let role = app.role_in(&admin, name).await;
        app.assign_role_as(&admin, &me, &role).await;
        let department = app.department_in(&admin, name).await;
        app.assign_department_as(&admin, &me, &department).await;
    }
    app.space_as(&admin, "ordered one", json!({})).await;
    app.space_as(&admin, "ordered two", json!({})).await;
    for run in 0..50 {
        let text = app
            .client
            .post(format!("{}/graphql", app.url))
            .bearer_auth(&admin)
            .json(&json!({ "query": SHAPE, "variables": { "skip": true } }))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let body: Ordered = serde_json::from_str(&text).unwrap();
        assert_eq!(body.keys(), ["data"], "run {run}: {text}");
        let data = body.get("data");
        assert_eq!(
            data.keys(),
            ["viewer", "me", "spaces", "__typename"],
            "run {run}"
        );
        let viewer = data.get("viewer");
        assert_eq!(
            viewer.keys(),
            [
                "roles",
                "principal",
                "organization",
                "departments",
                "__typename"
            ],
            "run {run}"
        );
        for role in viewer.get("roles").items() {
            assert_eq!(role.keys(), ["name", "id"], "run {run}");
        }
        assert_eq!(viewer.get("principal").keys(), ["name", "id", "__typename"]);
        assert_eq!(viewer.get("organization").keys(), ["name", "handle", "id"]);
        for department in viewer.get("departments").items() {
            assert_eq!(department.keys(), ["name", "id"], "run {run}");
        }
        let alias = data.get("me");
        assert_eq!(alias.keys(), ["__typename", "departments", "organization"]);
        let spaces = data.get("spaces");
        assert_eq!(
            spaces.keys(),
            ["totalCount", "edges", "pageInfo"],
            "run {run}"
        );
        let edges = spaces.get("edges").items();
        assert_eq!(edges.len(), 2);
        for edge in edges {
            assert_eq!(edge.keys(), ["node", "cursor"], "run {run}");
            assert_eq!(
                edge.get("node").keys(),
                ["memoryCount", "name", "id", "__typename"],
                "run {run}"
            );
        }
        assert_eq!(spaces.get("pageInfo").keys(), ["hasNextPage", "endCursor"]);
    }
}

// ---- the JSON scalar and the schema's consistent names ----

#[tokio::test]
async fn the_json_scalar_names_its_specification_and_keeps_its_wire_format() {
    let app = TestApp::spawn().await;
    let r = app
        .gql(
            r#"{ __type(name: "JSON") { kind description specifiedByURL } }"#,
            json!({}),
        )
        .await;
    let t = &r.data()["__type"];
    assert_eq!(t["kind"], "SCALAR");
    assert_eq!(
        t["specifiedByURL"],
        "https://www.rfc-editor.org/rfc/rfc8259"
    );
    assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()));

    // A value goes in (as a variable, and as a literal) and comes out as itself, not a string.
    let space = app.space_as(&app.admin_key, "json", json!({})).await;
    let metadata = json!({ "a": [1, 2.5, "x", null, true], "b": { "c": -3 } });
    let id = app
        .memory_as(&app.admin_key, &space, "m", json!({ "metadata": metadata }))
        .await;
    let r = app
        .gql(
            "query($id:ID!){ memory(id:$id){ metadata } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(r.data()["memory"]["metadata"], metadata);
    let r = app
        .gql(
            r#"mutation($id:ID!){ updateMemory(id:$id, input:{metadata:{k:"v", n:[1]}}){ metadata } }"#,
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        r.data()["updateMemory"]["metadata"],
        json!({ "k": "v", "n": [1] })
    );
    // Not an object: still the domain's VALIDATION_ERROR on `metadata`.
    let r = app
        .create_memory_as(&app.admin_key, &space, "m2", json!({ "metadata": [1] }))
        .await;
    assert_eq!(r.code(), "VALIDATION_ERROR");
}

#[tokio::test]
async fn space_filter_name_glob_filters_and_the_deprecated_name_still_does() {
    let app = TestApp::spawn().await;
    let key = &app.admin_key;
    for name in ["Research notes", "Research log", "Kitchen"] {
        app.space_as(key, name, json!({})).await;
    }
    let names = |r: &crate::common::GqlResponse| -> Vec<String> {
        let mut v: Vec<String> = r.data()["spaces"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let q = "query($f:SpaceFilter){ spaces(filter:$f){ nodes{ name } } }";
    let research = vec!["Research log".to_string(), "Research notes".to_string()];

    let new = app
        .gql(q, json!({ "f": { "nameGlob": "Research*" } }))
        .await;
    assert_eq!(names(&new), research);
    let old = app.gql(q, json!({ "f": { "name": "Research*" } })).await;
    assert_eq!(names(&old), research);
    let same = app
        .gql(
            q,
            json!({ "f": { "name": "Research*", "nameGlob": "Research*" } }),
        )
        .await;
    assert_eq!(names(&same), research);

    let both = app
        .gql(
            q,
            json!({ "f": { "name": "Research*", "nameGlob": "Kit*" } }),
        )
        .await;
    assert_eq!(both.code(), "VALIDATION_ERROR");
    assert_eq!(both.field(), "filter.nameGlob");

    // Introspection marks the old input field deprecated, with a reason.
    let r = app
        .gql(
            r#"{ __type(name: "SpaceFilter") { inputFields(includeDeprecated: true) { name isDeprecated deprecationReason } } }"#,
            json!({}),
        )
        .await;
    let fields = r.data()["__type"]["inputFields"]
        .as_array()
        .unwrap()
        .clone();
    let field = |n: &str| fields.iter().find(|f| f["name"] == n).cloned().unwrap();
    assert_eq!(field("nameGlob")["isDeprecated"], false);
    assert_eq!(field("name")["isDeprecated"], true);
    assert!(field("name")["deprecationReason"]
        .as_str()
        .unwrap()
        .contains("nameGlob"));
}

#[tokio::test]
async fn space_memories_order_by_sorts_and_the_deprecated_order_still_does() {
    let app = TestApp::spawn().await;
    let key = &app.admin_key;
    let space = app.space_as(key, "ordered", json!({})).await;
    let mut ids = Vec::new();
    for content in ["one", "two", "three"] {
        ids.push(app.memory_as(key, &space, content, json!({})).await);
    }
    let listed = |r: &crate::common::GqlResponse| -> Vec<String> {
        r.data()["space"]["memories"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect()
    };
    let mut newest_first = ids.clone();
    newest_first.reverse();

    let q = "query($s:ID!,$o:MemoryOrder){ space(id:$s){ memories(orderBy:$o){ nodes{ id } } } }";
    let asc = app
        .gql(q, json!({ "s": space, "o": { "direction": "ASC" } }))
        .await;
    assert_eq!(listed(&asc), ids);
    let desc = app
        .gql(
            q,
            json!({ "s": space, "o": { "field": "CREATED_AT", "direction": "DESC" } }),
        )
        .await;
    assert_eq!(listed(&desc), newest_first);
    let default = app.gql(q, json!({ "s": space, "o": null })).await;
    assert_eq!(listed(&default), newest_first);

    // The deprecated argument still sorts, and `orderBy` wins when both are given.
    let old = app
        .gql(
            "query($s:ID!){ space(id:$s){ memories(order:ASC){ nodes{ id } } } }",
            json!({ "s": space }),
        )
        .await;
    assert_eq!(listed(&old), ids);
    let both = app
        .gql(
            "query($s:ID!){ space(id:$s){ memories(order:ASC, orderBy:{direction:DESC}){ nodes{ id } } } }",
            json!({ "s": space }),
        )
        .await;
    assert_eq!(listed(&both), newest_first);

    let r = app
        .gql(
            r#"{ __type(name: "Space") { fields { name args(includeDeprecated: true) { name isDeprecated } } } }"#,
            json!({}),
        )
        .await;
    let memories = r.data()["__type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "memories")
        .cloned()
        .unwrap();
    let arg = |n: &str| {
        memories["args"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(arg("order")["isDeprecated"], true);
    assert_eq!(arg("orderBy")["isDeprecated"], false);
}

#[tokio::test]
async fn audit_event_actor_principal_kind_is_an_enum_and_the_deprecated_actor_kind_still_answers() {
    let app = TestApp::spawn().await;
    // Creating a user's API key is audited, with the admin user as the actor.
    app.user("audited", false).await;
    let r = app
        .gql(
            r#"{ auditEvents(filter:{action:"api_key.create"}) { nodes { action actorKind actorPrincipalKind } } }"#,
            json!({}),
        )
        .await;
    let nodes = r.data()["auditEvents"]["nodes"].as_array().unwrap().clone();
    assert!(!nodes.is_empty(), "no api_key.create event: {nodes:?}");
    for n in &nodes {
        assert_eq!(n["actorPrincipalKind"], "USER");
        assert_eq!(n["actorKind"], "USER");
    }
    let r = app
        .gql(
            r#"{ __type(name: "AuditEvent") { fields(includeDeprecated: true) { name isDeprecated type { kind name ofType { kind name } } } } }"#,
            json!({}),
        )
        .await;
    let fields = r.data()["__type"]["fields"].as_array().unwrap().clone();
    let field = |n: &str| fields.iter().find(|f| f["name"] == n).cloned().unwrap();
    assert_eq!(field("actorKind")["isDeprecated"], true);
    assert_eq!(field("actorPrincipalKind")["isDeprecated"], false);
    assert_eq!(
        field("actorPrincipalKind")["type"]["ofType"],
        json!({ "kind": "ENUM", "name": "PrincipalKind" })
    );
}
