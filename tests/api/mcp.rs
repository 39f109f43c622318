//! The MCP endpoint driven by real MCP clients: rmcp's own client (Streamable HTTP, both the
//! 2026-07-28 stateless protocol and the 2025-11-25 session handshake) from Rust, and the
//! official Python SDK through `tests/mcp/acceptance.py` (HTTP and the `memspace mcp` stdio
//! forwarder). Errors are asserted by their codes, as for GraphQL.
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion,
    ReadResourceRequestParams, ServerNotification, SubscriptionFilter,
};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient};
use serde_json::{json, Value};

use crate::common::TestApp;

mod acceptance;
mod property;

/// An MCP session with a Memspace server, as rmcp's client.
pub struct Mcp {
    client: RunningService<RoleClient, ClientConfig>,
}

pub async fn connect_with(app: &TestApp, key: &str, lifecycle: ClientLifecycleMode) -> Mcp {
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", app.url))
        .auth_header(key.to_string());
    let transport = StreamableHttpClientTransport::from_config(config);
    let client = ClientConfig::default()
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("MCP client connects");
    Mcp { client }
}

/// The current protocol (2026-07-28, stateless).
pub async fn connect(app: &TestApp, key: &str) -> Mcp {
    connect_with(
        app,
        key,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
}

/// The tool result of a call (a tool error is still a result).
pub fn code_of(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "expected a tool error: {r:?}");
    r.structured_content.as_ref().expect("structured error")["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl Mcp {
    pub async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        self.try_call(tool, args)
            .await
            .expect("tools/call answered")
    }

    pub async fn try_call(
        &self,
        tool: &str,
        args: Value,
    ) -> Result<CallToolResult, rmcp::ServiceError> {
        let args = args.as_object().cloned().unwrap_or_default();
        self.client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
            .await
    }

    /// `structuredContent` of a successful call; panics with the error otherwise.
    pub async fn ok(&self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args).await;
        assert_ne!(r.is_error, Some(true), "{tool} failed: {r:?}");
        assert!(
            r.content.first().and_then(|c| c.as_text()).is_some(),
            "{tool} gave no text rendering"
        );
        r.structured_content.expect("structured content")
    }

    /// The error code of a call that must fail.
    pub async fn code(&self, tool: &str, args: Value) -> String {
        code_of(&self.call(tool, args).await)
    }

    pub async fn close(self) {
        let _ = self.client.cancel().await;
    }
}

async fn post_mcp(app: &TestApp, key: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/mcp", app.url))
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.expect("request sent")
}

fn initialize() -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},
        "clientInfo":{"name":"raw","version":"1"}}})
}

/// A user's key with its id, for revoking it.
async fn user_key_with_id(app: &TestApp, name: &str) -> (String, String, String) {
    let (user_id, _) = app.user(name, false).await;
    let r = app
        .gql(
            "mutation($u:ID!){ createApiKey(input:{userId:$u,name:\"mcp\"}){ key apiKey{ id } } }",
            json!({ "u": user_id }),
        )
        .await;
    let k = &r.data()["createApiKey"];
    (
        user_id,
        k["key"].as_str().unwrap().to_string(),
        k["apiKey"]["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn mcp_without_a_valid_key_is_401_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    for key in [None, Some("not-a-key-at-all-0000")] {
        let r = post_mcp(&app, key, initialize()).await;
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
        let body: Value = r.json().await.expect("JSON-RPC error body");
        assert_eq!(body["error"]["data"]["code"], "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn both_protocol_revisions_are_negotiated() {
    let app = TestApp::spawn().await;
    let modern = connect(&app, &app.admin_key).await;
    assert_eq!(
        modern
            .client
            .peer_info()
            .map(|i| i.protocol_version.to_string()),
        Some("2026-07-28".to_string())
    );
    modern.close().await;
    let legacy = connect_with(&app, &app.admin_key, ClientLifecycleMode::Initialize).await;
    let version = legacy
        .client
        .peer_info()
        .map(|i| i.protocol_version.to_string());
    assert_eq!(version.as_deref(), Some("2025-11-25"));
    assert!(!legacy.ok("list_spaces", json!({})).await["spaces"].is_null());
    legacy.close().await;
    // An old client asking for an old revision gets it.
    let r = post_mcp(
        &app,
        Some(&app.admin_key),
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2024-11-05","capabilities":{},
            "clientInfo":{"name":"old","version":"1"}}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap_or_default();
    assert!(
        text.contains("\"protocolVersion\":\"2024-11-05\""),
        "{text}"
    );
}

#[tokio::test]
async fn the_tools_are_listed_with_schemas_and_truthful_annotations() {
    let app = TestApp::spawn().await;
    let mcp = connect(&app, &app.admin_key).await;
    let tools = mcp.client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "add_memories",
            "create_space",
            "delete_memory",
            "get_memory",
            "get_space",
            "list_spaces",
            "recent_memories",
            "search_memories",
            "update_memory"
        ]
    );
    for t in &tools {
        assert_eq!(
            t.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            t.name
        );
        let a = t.annotations.as_ref().expect("annotations");
        let read_only = matches!(
            t.name.as_ref(),
            "search_memories" | "get_memory" | "list_spaces" | "get_space" | "recent_memories"
        );
        assert_eq!(a.read_only_hint, Some(read_only), "{}", t.name);
        let destructive = matches!(t.name.as_ref(), "update_memory" | "delete_memory");
        assert_eq!(a.destructive_hint, Some(destructive), "{}", t.name);
    }
    let search = tools.iter().find(|t| t.name == "search_memories").unwrap();
    let props = &search.input_schema["properties"];
    for p in ["query", "space_ids", "mode", "limit", "tags", "agent_id"] {
        assert!(
            props.get(p).is_some(),
            "search_memories has no {p}: {props}"
        );
    }
    assert_eq!(search.input_schema["required"], json!(["query"]));
    mcp.close().await;
}

#[tokio::test]
async fn an_agent_writes_searches_updates_and_deletes_through_the_tools() {
    let app = TestApp::spawn().await;
    let (agent_id, agent_key) = app.agent("scribe").await;
    let space = app
        .space_as(
            &app.admin_key,
            "notes",
            json!({ "grants": [{ "subjectKind": "AGENT", "subjectId": agent_id, "permission": "EDIT" }] }),
        )
        .await;
    let mcp = connect(&app, &agent_key).await;

    let added = mcp
        .ok(
            "add_memories",
            json!({ "space_id": space, "memories": [
                { "content": "The launch moved to Thursday", "tags": ["launch"], "importance": 8,
                  "metadata": { "source": "standup" }, "thread_id": "t1" },
                { "content": "Thursday's venue is the harbour hall", "tags": ["venue"] }
            ] }),
        )
        .await;
    let memories = added["memories"].as_array().unwrap();
    assert_eq!(memories.len(), 2);
    let first = memories[0]["id"].as_str().unwrap().to_string();
    assert_eq!(memories[0]["author"]["kind"], "AGENT");
    assert_eq!(memories[0]["metadata"]["source"], "standup");

    let hits = mcp
        .ok(
            "search_memories",
            json!({ "query": "launch Thursday", "mode": "keyword", "tags": ["launch"] }),
        )
        .await;
    let hits = hits["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["memory"]["id"], first.as_str());

    let got = mcp.ok("get_memory", json!({ "memory_id": first })).await;
    let version = got["memory"]["version"].as_i64().unwrap();
    let updated = mcp
        .ok(
            "update_memory",
            json!({ "memory_id": first, "expected_version": version, "content": "The launch is on Friday" }),
        )
        .await;
    assert_eq!(updated["memory"]["content"], "The launch is on Friday");
    let stale = mcp
        .call(
            "update_memory",
            json!({ "memory_id": first, "expected_version": version, "content": "again" }),
        )
        .await;
    assert_eq!(code_of(&stale), "CONFLICT");
    assert_eq!(
        stale.structured_content.unwrap()["error"]["currentVersion"],
        version + 1
    );

    let recent = mcp
        .ok("recent_memories", json!({ "space_id": space, "limit": 1 }))
        .await;
    assert_eq!(recent["memories"].as_array().unwrap().len(), 1);
    assert!(recent["next_cursor"].is_string());
    let rest = mcp
        .ok(
            "recent_memories",
            json!({ "space_id": space, "cursor": recent["next_cursor"] }),
        )
        .await;
    assert_eq!(rest["memories"].as_array().unwrap().len(), 1);

    mcp.ok("delete_memory", json!({ "memory_id": first })).await;
    assert_eq!(
        mcp.code("get_memory", json!({ "memory_id": first })).await,
        "NOT_FOUND"
    );
    assert_eq!(
        mcp.code("delete_memory", json!({ "memory_id": first }))
            .await,
        "NOT_FOUND"
    );
    mcp.close().await;
}

#[tokio::test]
async fn spaces_are_listed_paged_fetched_and_created() {
    let app = TestApp::spawn().await;
    for name in ["Research-a", "Research-b", "Research-c", "Other"] {
        app.space_as(&app.admin_key, name, json!({})).await;
    }
    let mcp = connect(&app, &app.admin_key).await;
    let page = mcp
        .ok("list_spaces", json!({ "name": "Research*", "first": 2 }))
        .await;
    assert_eq!(page["spaces"].as_array().unwrap().len(), 2);
    let next = mcp
        .ok(
            "list_spaces",
            json!({ "name": "Research*", "first": 2, "cursor": page["next_cursor"] }),
        )
        .await;
    assert_eq!(next["spaces"].as_array().unwrap().len(), 1);
    assert!(next["next_cursor"].is_null());
    assert_eq!(
        mcp.code("list_spaces", json!({ "cursor": "garbage" }))
            .await,
        "INVALID_ARGUMENT"
    );

    let created = mcp
        .ok(
            "create_space",
            json!({ "name": "made-over-mcp", "description": "d", "tags": ["x"],
                    "labels": [{ "key": "team", "value": "core" }], "visibility": "organization" }),
        )
        .await;
    let id = created["space"]["id"].as_str().unwrap();
    assert_eq!(created["space"]["access_mode"], "ORGANIZATION");
    let got = mcp.ok("get_space", json!({ "space_id": id })).await;
    assert_eq!(got["space"]["labels"][0]["key"], "team");
    assert_eq!(got["space"]["your_permission"], "OWNER");
    assert_eq!(
        mcp.code("create_space", json!({ "name": "made-over-mcp" }))
            .await,
        "ALREADY_EXISTS"
    );
    mcp.close().await;
}

#[tokio::test]
async fn tool_errors_carry_the_graphql_codes() {
    let app = TestApp::spawn().await;
    let (viewer_id, viewer_key) = app.user("viewer", false).await;
    let shared = app
        .space_as(
            &app.admin_key,
            "read-only",
            json!({ "duplicatePolicy": "REJECT",
                    "grants": [{ "subjectKind": "USER", "subjectId": viewer_id, "permission": "VIEW" }] }),
        )
        .await;
    let hidden = app.space_as(&app.admin_key, "hidden", json!({})).await;
    let existing = app
        .memory_as(&app.admin_key, &shared, "the one fact", json!({}))
        .await;

    let viewer = connect(&app, &viewer_key).await;
    // Readable but not writable: FORBIDDEN; not readable at all: NOT_FOUND, as if absent.
    let write = json!({ "space_id": shared, "memories": [{ "content": "x" }] });
    assert_eq!(viewer.code("add_memories", write).await, "FORBIDDEN");
    let write = json!({ "space_id": hidden, "memories": [{ "content": "x" }] });
    assert_eq!(viewer.code("add_memories", write).await, "NOT_FOUND");
    assert_eq!(
        viewer
            .code("get_space", json!({ "space_id": hidden }))
            .await,
        "NOT_FOUND"
    );
    assert_eq!(
        viewer
            .code(
                "search_memories",
                json!({ "query": "x", "space_ids": [hidden] })
            )
            .await,
        "NOT_FOUND"
    );
    viewer.close().await;

    let admin = connect(&app, &app.admin_key).await;
    // A bad argument: VALIDATION_ERROR naming the field, from the domain or from the schema.
    for (args, field) in [
        (
            json!({ "space_id": shared, "memories": [{ "content": "  " }] }),
            "content",
        ),
        (
            json!({ "space_id": shared, "memories": [{ "content": 5 }] }),
            "memories[0].content",
        ),
        (json!({ "memories": [] }), "space_id"),
        (
            json!({ "space_id": shared, "memories": [{ "content": "a", "importance": 99 }] }),
            "importance",
        ),
        (
            json!({ "space_id": shared, "memories": [{ "content": "a" }], "bogus": 1 }),
            "bogus",
        ),
    ] {
        let r = admin.call("add_memories", args.clone()).await;
        assert_eq!(code_of(&r), "VALIDATION_ERROR", "{args}");
        assert_eq!(
            r.structured_content.unwrap()["error"]["field"],
            field,
            "{args}"
        );
    }
    let limit = admin
        .call("search_memories", json!({ "query": "x", "limit": 1000 }))
        .await;
    assert_eq!(code_of(&limit), "INVALID_ARGUMENT");

    // A duplicate under REJECT: DUPLICATE with the existing id.
    let dup = admin
        .call(
            "add_memories",
            json!({ "space_id": shared, "memories": [{ "content": "The one fact" }] }),
        )
        .await;
    assert_eq!(code_of(&dup), "DUPLICATE");
    assert_eq!(
        dup.structured_content.unwrap()["error"]["existingId"],
        existing.as_str()
    );
    // The call's policy overrides the space's.
    let allowed = admin
        .ok(
            "add_memories",
            json!({ "space_id": shared, "on_duplicate": "allow",
                    "memories": [{ "content": "the one fact" }] }),
        )
        .await;
    assert_ne!(allowed["memories"][0]["id"], existing.as_str());
    admin.close().await;
}

#[tokio::test]
async fn a_key_revoked_mid_session_is_refused_on_the_next_request() {
    let app = TestApp::spawn().await;
    let (_, key, key_id) = user_key_with_id(&app, "leaver").await;
    for lifecycle in [
        ClientLifecycleMode::Initialize,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    ] {
        let (_, key, key_id) = if matches!(lifecycle, ClientLifecycleMode::Initialize) {
            (String::new(), key.clone(), key_id.clone())
        } else {
            user_key_with_id(&app, "leaver2").await
        };
        let mcp = connect_with(&app, &key, lifecycle).await;
        mcp.ok("list_spaces", json!({})).await;
        app.gql(
            "mutation($id:ID!){ revokeApiKey(id:$id) }",
            json!({ "id": key_id }),
        )
        .await
        .data();
        let after = mcp.try_call("list_spaces", json!({})).await;
        assert!(after.is_err(), "a revoked key still answered: {after:?}");
        let raw = post_mcp(&app, Some(&key), initialize()).await;
        assert_eq!(raw.status(), 401);
        mcp.close().await;
    }
}

#[tokio::test]
async fn a_space_token_sees_only_its_space() {
    let app = TestApp::spawn().await;
    let mine = app.space_as(&app.admin_key, "tokened", json!({})).await;
    let other = app.space_as(&app.admin_key, "elsewhere", json!({})).await;
    app.memory_as(&app.admin_key, &mine, "tokened apple", json!({}))
        .await;
    let theirs = app
        .memory_as(&app.admin_key, &other, "elsewhere apple", json!({}))
        .await;
    let (_, token) = app
        .space_token_as(&app.admin_key, &mine, "VIEW", None)
        .await;
    let mcp = connect(&app, &token).await;
    let listed = mcp.ok("list_spaces", json!({})).await;
    let ids: Vec<&str> = listed["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()]);
    let hits = mcp
        .ok(
            "search_memories",
            json!({ "query": "apple", "mode": "keyword" }),
        )
        .await;
    let hits = hits["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["memory"]["space_id"], mine.as_str());
    assert_eq!(
        mcp.code("get_memory", json!({ "memory_id": theirs })).await,
        "NOT_FOUND"
    );
    let write = json!({ "space_id": mine, "memories": [{ "content": "x" }] });
    assert_eq!(mcp.code("add_memories", write).await, "FORBIDDEN");
    assert_eq!(
        mcp.code("create_space", json!({ "name": "n" })).await,
        "FORBIDDEN"
    );
    mcp.close().await;
}

#[tokio::test]
async fn a_cross_tenant_read_over_mcp_is_audited() {
    let app = TestApp::spawn().await;
    let other_admin = app.other_org("mcp-reader-org").await;
    let space = app
        .space_as(
            &app.admin_key,
            "public-notes",
            json!({ "accessMode": "PUBLIC" }),
        )
        .await;
    let memory = app
        .memory_as(&app.admin_key, &space, "public fact", json!({}))
        .await;
    let mcp = connect(&app, &other_admin).await;
    mcp.ok("get_space", json!({ "space_id": space })).await;
    mcp.ok("get_memory", json!({ "memory_id": memory })).await;
    mcp.close().await;
    let r = app
        .gql(
            "query($r:ID){ auditEvents(filter:{resourceId:$r}){ edges{ node{ action } } } }",
            json!({ "r": space }),
        )
        .await;
    let actions: Vec<&str> = r.data()["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"space.read"), "{actions:?}");
    assert!(actions.contains(&"memory.read"), "{actions:?}");
}

#[tokio::test]
async fn readable_spaces_are_resources_and_a_graphql_write_notifies_a_subscriber() {
    let app = TestApp::spawn().await;
    let (viewer_id, viewer_key) = app.user("watcher", false).await;
    let seen = app
        .space_as(
            &app.admin_key,
            "watched",
            json!({ "grants": [{ "subjectKind": "USER", "subjectId": viewer_id, "permission": "VIEW" }] }),
        )
        .await;
    let unseen = app.space_as(&app.admin_key, "unseen", json!({})).await;
    app.memory_as(&app.admin_key, &seen, "first thing we learned", json!({}))
        .await;
    let mcp = connect(&app, &viewer_key).await;

    let listed = mcp
        .client
        .list_all_resources()
        .await
        .expect("resources/list");
    let uris: Vec<&str> = listed.iter().map(|r| r.uri.as_str()).collect();
    let uri = format!("memspace://spaces/{seen}");
    assert_eq!(uris, [uri.as_str()]);
    let read = mcp
        .client
        .read_resource(ReadResourceRequestParams::new(uri.clone()))
        .await
        .expect("resources/read");
    let text = match &read.contents[0] {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("not text: {other:?}"),
    };
    let body: Value = serde_json::from_str(&text).expect("JSON resource");
    assert_eq!(
        body["recent_memories"][0]["content"],
        "first thing we learned"
    );
    let hidden = mcp
        .client
        .read_resource(ReadResourceRequestParams::new(format!(
            "memspace://spaces/{unseen}"
        )))
        .await;
    assert!(hidden.is_err(), "an unreadable space was read: {hidden:?}");

    let mut sub = mcp
        .client
        .listen(
            SubscriptionFilter::builder()
                .resource_subscription(uri.clone())
                .build(),
        )
        .await
        .expect("subscriptions/listen");
    // Writes elsewhere are not announced; a write over GraphQL to the space is.
    app.memory_as(&app.admin_key, &unseen, "elsewhere", json!({}))
        .await;
    app.memory_as(&app.admin_key, &seen, "second thing", json!({}))
        .await;
    let note = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a notification in time")
        .expect("subscription alive");
    match note {
        Some(ServerNotification::ResourceUpdatedNotification(n)) => assert_eq!(n.params.uri, uri),
        other => panic!("expected resources/updated, got {other:?}"),
    }
    // Unshared: access is re-checked and the subscription ends.
    app.gql(
        "mutation($id:ID!,$g:[GrantInput!]!){ unshareSpace(id:$id,grants:$g){ id } }",
        json!({ "id": seen, "g": [{ "subjectKind": "USER", "subjectId": viewer_id, "permission": "VIEW" }] }),
    )
    .await
    .data();
    app.memory_as(&app.admin_key, &seen, "third thing", json!({}))
        .await;
    let ended = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("the subscription ends in time");
    assert!(
        !matches!(
            ended,
            Ok(Some(ServerNotification::ResourceUpdatedNotification(_)))
        ),
        "still notified after losing access: {ended:?}"
    );
    mcp.close().await;
}

#[tokio::test]
async fn the_recall_prompt_frames_search_hits() {
    let app = TestApp::spawn().await;
    let space = app.space_as(&app.admin_key, "facts", json!({})).await;
    app.memory_as(
        &app.admin_key,
        &space,
        "The office wifi password rotates monthly",
        json!({}),
    )
    .await;
    let mcp = connect(&app, &app.admin_key).await;
    let prompts = mcp.client.list_all_prompts().await.expect("prompts/list");
    assert_eq!(
        prompts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["recall"]
    );
    let args = json!({ "query": "wifi password" })
        .as_object()
        .cloned()
        .unwrap();
    let got = mcp
        .client
        .get_prompt(rmcp::model::GetPromptRequestParams::new("recall").with_arguments(args))
        .await
        .expect("prompts/get");
    let text = format!("{:?}", got.messages);
    assert!(text.contains("wifi password rotates monthly"), "{text}");
    mcp.close().await;
}

#[tokio::test]
async fn mcp_shares_the_body_limit_and_the_rate_limit_with_graphql() {
    let app = TestApp::spawn_with(|c| {
        c.max_body_bytes = 4096;
        // Low enough that a slow, loaded machine cannot refill it between the requests below.
        c.rate_limit = Some((2, 20));
    })
    .await;
    let big = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},
        "clientInfo":{"name":"x".repeat(10_000),"version":"1"}}});
    let r = post_mcp(&app, Some(&app.admin_key), big).await;
    assert_eq!(r.status(), 413);

    let mut limited = None;
    for _ in 0..400 {
        let r = post_mcp(&app, Some(&app.admin_key), initialize()).await;
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the rate limit applies to /mcp");
    assert!(r.headers().get("retry-after").is_some());
    let body: Value = r.json().await.expect("JSON-RPC error body");
    assert_eq!(body["error"]["data"]["code"], "RATE_LIMITED");
}
