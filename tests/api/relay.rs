//! Relay's conventions (issue 18 item 2): the `Node` interface with `node(id)` / `nodes(ids)`
//! under the same access rules as the typed lookups, a viewer id of its own, stable member ids,
//! backward pagination (`last`/`before`) and the `nodes` shortcut on every connection.
use serde_json::{json, Value};

use crate::common::TestApp;

/// Every kind of object the schema gives a stable id, created as the org admin: (typename, id).
async fn one_of_each(app: &TestApp) -> Vec<(&'static str, String)> {
    let admin = app.admin_key.clone();
    let space = app.space_as(&admin, "relay-space", json!({})).await;
    let memory = app
        .memory_as(&admin, &space, "a memory to find again", json!({}))
        .await;
    let workspace = app.workspace_as(&admin, "relay-ws").await;
    let (user, _) = app.user("relay-user", false).await;
    let (agent, _) = app.agent("relay-agent").await;
    let role = app.role_in(&admin, "relay-role").await;
    let department = app.department_in(&admin, "relay-dept").await;
    let org = app.org_id_of(&admin).await;
    let key = app
        .gql(
            "mutation($u:ID!){ createApiKey(input:{userId:$u,name:\"k\"}){ apiKey{ id } } }",
            json!({ "u": user }),
        )
        .await;
    let api_key = key.data()["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (token, _) = app.space_token_as(&admin, &space, "VIEW", None).await;
    let shared = app
        .gql(
            "mutation($s:ID!,$u:ID!){ shareSpace(id:$s,grants:[{subjectKind:USER,subjectId:$u,permission:VIEW}]){ grants{ id } } }",
            json!({ "s": space, "u": user }),
        )
        .await;
    let grant = shared.data()["shareSpace"]["grants"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let audit = app
        .gql(
            "{ auditEvents(first: 1){ edges{ node{ id } } } }",
            json!({}),
        )
        .await;
    let event = audit.data()["auditEvents"]["edges"][0]["node"]["id"]
        .as_str()
        .expect("the admin's writes are audited")
        .to_string();
    vec![
        ("Space", space),
        ("Memory", memory),
        ("Workspace", workspace),
        ("User", user),
        ("Agent", agent),
        ("Role", role),
        ("Department", department),
        ("Organization", org),
        ("ApiKey", api_key),
        ("SpaceToken", token),
        ("SpaceGrant", grant),
        ("AuditEvent", event),
    ]
}

/// The typenames of `all` whose entry in `seen` is not null, in order.
fn visible_kinds<'a>(all: &[(&'a str, String)], seen: &[Value]) -> Vec<&'a str> {
    all.iter()
        .zip(seen)
        .filter(|(_, n)| !n.is_null())
        .map(|((t, _), _)| *t)
        .collect()
}

async fn nodes_as(app: &TestApp, key: &str, ids: &[String]) -> Vec<Value> {
    let r = app
        .gql_as(
            Some(key),
            "query($ids:[ID!]!){ nodes(ids:$ids){ __typename id } }",
            json!({ "ids": ids }),
        )
        .await;
    r.data()["nodes"].as_array().unwrap().clone()
}

#[tokio::test]
async fn node_refetches_every_kind_by_its_id_and_nodes_keeps_the_order() {
    let app = TestApp::spawn().await;
    let all = one_of_each(&app).await;
    let ids: Vec<String> = all.iter().map(|(_, id)| id.clone()).collect();
    let got = nodes_as(&app, &app.admin_key, &ids).await;
    assert_eq!(got.len(), all.len());
    for ((typename, id), node) in all.iter().zip(&got) {
        assert_eq!(node["__typename"], *typename, "{node}");
        assert_eq!(node["id"], *id.as_str(), "{node}");
    }
    // Each one alone through `node`, with a fragment on the concrete type.
    for (typename, id) in &all {
        let r = app
            .gql(
                "query($id:ID!){ node(id:$id){ __typename id ... on Space { name } ... on Memory { content } } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(r.data()["node"]["__typename"], *typename);
    }
    let r = app
        .gql(
            "query($id:ID!){ node(id:$id){ ... on Space { name memories(first: 5){ nodes{ content } } } } }",
            json!({ "id": all[0].1 }),
        )
        .await;
    assert_eq!(r.data()["node"]["name"], "relay-space");
    assert_eq!(
        r.data()["node"]["memories"]["nodes"][0]["content"],
        "a memory to find again"
    );
    // Repeated ids resolve each time.
    let twice = nodes_as(&app, &app.admin_key, &[ids[0].clone(), ids[0].clone()]).await;
    assert_eq!(twice[0], twice[1]);
}

#[tokio::test]
async fn node_hides_from_other_tenants_users_and_tokens_what_the_typed_lookups_hide() {
    let app = TestApp::spawn().await;
    let all = one_of_each(&app).await;
    let ids: Vec<String> = all.iter().map(|(_, id)| id.clone()).collect();

    // Another organization's admin sees none of it, and cannot tell hidden from missing.
    let stranger = app.other_org("relay-stranger").await;
    let seen = nodes_as(&app, &stranger, &ids).await;
    assert!(seen.iter().all(Value::is_null), "{seen:?}");

    // An ordinary member of the organization: the directory, and the organization itself, but
    // not the admin's private space, its memory, token, grant, the admin's API key of another
    // user, a workspace it is not in, nor the audit log.
    let (_, member) = app.user("relay-member", false).await;
    let seen = nodes_as(&app, &member, &ids).await;
    let visible = visible_kinds(&all, &seen);
    assert_eq!(
        visible,
        ["User", "Agent", "Role", "Department", "Organization"],
        "{seen:?}"
    );

    // A space token reaches its space (and what is in it), never the directory.
    let space = &all[0].1;
    let (_, token) = app
        .space_token_as(&app.admin_key, space, "VIEW", None)
        .await;
    let seen = nodes_as(&app, &token, &ids).await;
    let visible = visible_kinds(&all, &seen);
    assert_eq!(visible, ["Space", "Memory", "Organization"], "{seen:?}");
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_null_and_more_than_100_ids_is_a_validation_error() {
    let app = TestApp::spawn().await;
    let r = app
        .gql(
            "{ a: node(id: \"00000000-0000-0000-0000-000000000000\"){ id } b: node(id: \"not-a-uuid\"){ id } viewer { id } }",
            json!({}),
        )
        .await;
    let data = r.data();
    assert!(data["a"].is_null() && data["b"].is_null(), "{}", r.body);

    let ids: Vec<String> = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let r = app
        .gql(
            "query($ids:[ID!]!){ nodes(ids:$ids){ id } viewer { id } }",
            json!({ "ids": ids }),
        )
        .await;
    assert_eq!(r.code(), "VALIDATION_ERROR", "{}", r.body);
    assert_eq!(r.error()["extensions"]["field"], "ids", "{}", r.body);
    assert_eq!(r.error()["path"], json!(["nodes"]), "{}", r.body);
    // `nodes` is `[Node]!` (Relay's signature): its error nulls the whole `data`, as the
    // GraphQL specification has it for a non-null root field.
    assert!(r.body["data"].is_null(), "{}", r.body);
}

#[tokio::test]
async fn the_viewer_has_an_id_of_its_own_and_members_have_stable_ids() {
    let app = TestApp::spawn().await;
    let r = app
        .gql(
            "{ viewer { id principal { ... on User { id } } } }",
            json!({}),
        )
        .await;
    let viewer = r.data()["viewer"]["id"].as_str().unwrap().to_string();
    let user = r.data()["viewer"]["principal"]["id"].as_str().unwrap();
    assert_eq!(viewer, format!("viewer:{user}"));
    let again = app.gql("{ viewer { id } }", json!({})).await;
    assert_eq!(again.data()["viewer"]["id"], viewer.as_str());

    let ws = app.workspace_as(&app.admin_key, "members-ws").await;
    let q = "query($w:ID!){ workspace(id:$w){ members(first: 10){ nodes { id user { id } } } } }";
    let first = app.gql(q, json!({ "w": ws })).await;
    let second = app.gql(q, json!({ "w": ws })).await;
    let members = first.data()["workspace"]["members"]["nodes"]
        .as_array()
        .unwrap();
    assert!(!members.is_empty());
    for m in members {
        let id = m["id"].as_str().unwrap();
        assert_eq!(
            id,
            format!("member:{ws}:{}", m["user"]["id"].as_str().unwrap())
        );
    }
    assert_eq!(first.body, second.body);
}

fn contents(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["content"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn last_and_before_page_backward_through_a_space_and_the_audit_log() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let space = app.space_as(&key, "thread", json!({})).await;
    let texts: Vec<String> = (0..5).map(|i| format!("message number {i}")).collect();
    app.memories_as(&key, &space, &texts).await;
    let q = "query($s:ID!,$f:Int,$a:String,$l:Int,$b:String){ space(id:$s){ memories(first:$f,after:$a,last:$l,before:$b,order:ASC){ \
               edges{ cursor node{ content } } nodes{ content } pageInfo{ hasNextPage hasPreviousPage startCursor endCursor } } } }";
    let all = app.gql(q, json!({ "s": space, "f": 10 })).await;
    let all_conn = &all.data()["space"]["memories"];
    let order = contents(all_conn);
    assert_eq!(order.len(), 5);

    // The last two, still in the list's order, with an earlier page before them.
    let tail = app.gql(q, json!({ "s": space, "l": 2 })).await;
    let conn = &tail.data()["space"]["memories"];
    assert_eq!(contents(conn), order[3..].to_vec());
    assert_eq!(conn["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(conn["pageInfo"]["hasNextPage"], false);
    // `nodes` mirrors `edges`.
    let nodes: Vec<&str> = conn["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        order[3..].iter().map(String::as_str).collect::<Vec<_>>()
    );

    // Before the first of those: the two before, then the first alone with nothing before it.
    let before = conn["pageInfo"]["startCursor"].as_str().unwrap();
    let mid = app.gql(q, json!({ "s": space, "l": 2, "b": before })).await;
    let mid_conn = &mid.data()["space"]["memories"];
    assert_eq!(contents(mid_conn), order[1..3].to_vec());
    assert_eq!(mid_conn["pageInfo"]["hasNextPage"], true);
    let before = mid_conn["pageInfo"]["startCursor"].as_str().unwrap();
    let head = app.gql(q, json!({ "s": space, "l": 2, "b": before })).await;
    let head_conn = &head.data()["space"]["memories"];
    assert_eq!(contents(head_conn), order[..1].to_vec());
    assert_eq!(head_conn["pageInfo"]["hasPreviousPage"], false);

    // A forward cursor works backward too (cursors are positions, not directions).
    let third = all_conn["edges"][2]["cursor"].as_str().unwrap();
    let r = app.gql(q, json!({ "s": space, "l": 10, "b": third })).await;
    assert_eq!(
        contents(&r.data()["space"]["memories"]),
        order[..2].to_vec()
    );

    // Mixing directions is refused, naming the argument.
    let r = app.gql(q, json!({ "s": space, "f": 2, "l": 2 })).await;
    assert_eq!(r.code(), "INVALID_ARGUMENT", "{}", r.body);
    assert_eq!(r.error()["extensions"]["field"], "last", "{}", r.body);
    let r = app
        .gql(q, json!({ "s": space, "l": 2, "b": "garbage" }))
        .await;
    assert_eq!(r.code(), "INVALID_ARGUMENT", "{}", r.body);
    assert_eq!(r.error()["extensions"]["field"], "before", "{}", r.body);

    // The audit log (newest first): `last` reads its oldest end. API keys are audited.
    for name in ["audited-1", "audited-2", "audited-3"] {
        app.user(name, false).await;
    }
    let aq = "query($f:Int,$l:Int){ auditEvents(first:$f,last:$l){ nodes{ id } pageInfo{ hasPreviousPage } } }";
    let newest = app.gql(aq, json!({ "f": 1000 })).await;
    let ids: Vec<Value> = newest.data()["auditEvents"]["nodes"]
        .as_array()
        .unwrap()
        .clone();
    assert!(ids.len() >= 3, "{}", newest.body);
    let oldest = app.gql(aq, json!({ "l": 2 })).await;
    let got = oldest.data()["auditEvents"]["nodes"].as_array().unwrap();
    assert_eq!(got.as_slice(), &ids[ids.len() - 2..]);
    assert_eq!(
        oldest.data()["auditEvents"]["pageInfo"]["hasPreviousPage"],
        true
    );

    // Spaces and workspaces page backward too.
    for name in ["s1", "s2", "s3"] {
        app.space_as(&key, name, json!({})).await;
    }
    let sq = "query($f:Int,$l:Int){ spaces(first:$f,last:$l,orderBy:{field:NAME,direction:ASC}){ nodes{ name } } }";
    let all = app.gql(sq, json!({ "f": 100 })).await;
    let names = all.data()["spaces"]["nodes"].as_array().unwrap().clone();
    let last_two = app.gql(sq, json!({ "l": 2 })).await;
    assert_eq!(
        last_two.data()["spaces"]["nodes"]
            .as_array()
            .unwrap()
            .as_slice(),
        &names[names.len() - 2..]
    );
}

#[tokio::test]
async fn deletions_answer_with_the_removed_id_and_the_parent_as_it_is_now() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let ws = app.workspace_as(&key, "payload-ws").await;
    let space = app
        .space_as(&key, "payload-space", json!({ "workspaceId": ws }))
        .await;
    let texts: Vec<String> = (0..3).map(|i| format!("payload memory {i}")).collect();
    let ids = app.memories_as(&key, &space, &texts).await;

    let r = app
        .gql(
            "mutation($id:ID!){ deleteMemoryV2(id:$id){ deletedMemoryId space{ id memoryCount } } }",
            json!({ "id": ids[0] }),
        )
        .await;
    let p = &r.data()["deleteMemoryV2"];
    assert_eq!(p["deletedMemoryId"], ids[0].as_str());
    assert_eq!(p["space"]["id"], space.as_str());
    assert_eq!(p["space"]["memoryCount"], 2);
    // The old shape still works, and is gone for good afterwards.
    let r = app
        .gql(
            "mutation($id:ID!){ deleteMemory(id:$id) }",
            json!({ "id": ids[1] }),
        )
        .await;
    assert_eq!(r.data()["deleteMemory"], ids[1].as_str());
    let r = app
        .gql(
            "mutation($id:ID!){ deleteMemoryV2(id:$id){ deletedMemoryId } }",
            json!({ "id": ids[0] }),
        )
        .await;
    assert_eq!(r.code(), "NOT_FOUND", "{}", r.body);

    let (token, _) = app.space_token_as(&key, &space, "VIEW", None).await;
    let r = app
        .gql(
            "mutation($id:ID!){ revokeSpaceTokenV2(id:$id){ revokedSpaceTokenId spaceToken{ id revokedAt } space{ id } } }",
            json!({ "id": token }),
        )
        .await;
    let p = &r.data()["revokeSpaceTokenV2"];
    assert_eq!(p["revokedSpaceTokenId"], token.as_str());
    assert!(p["spaceToken"]["revokedAt"].is_string(), "{}", r.body);
    assert_eq!(p["space"]["id"], space.as_str());

    let (user, _) = app.user("payload-user", false).await;
    let made = app
        .gql(
            "mutation($u:ID!){ createApiKey(input:{userId:$u,name:\"k\"}){ apiKey{ id } } }",
            json!({ "u": user }),
        )
        .await;
    let api_key = made.data()["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .gql(
            "mutation($id:ID!){ revokeApiKeyV2(id:$id){ revokedApiKeyId apiKey{ id revokedAt } } }",
            json!({ "id": api_key }),
        )
        .await;
    let p = &r.data()["revokeApiKeyV2"];
    assert_eq!(p["revokedApiKeyId"], api_key.as_str());
    assert!(p["apiKey"]["revokedAt"].is_string(), "{}", r.body);

    app.add_workspace_member_as(&key, &ws, &user, "VIEWER")
        .await;
    let r = app
        .gql(
            "mutation($w:ID!,$u:ID!){ removeWorkspaceMemberV2(workspaceId:$w,userId:$u){ removedMemberId userId workspace{ id } } }",
            json!({ "w": ws, "u": user }),
        )
        .await;
    let p = &r.data()["removeWorkspaceMemberV2"];
    assert_eq!(p["removedMemberId"], format!("member:{ws}:{user}").as_str());
    assert_eq!(p["workspace"]["id"], ws.as_str());

    let r = app
        .gql(
            "mutation($id:ID!){ purgeSpaceV2(id:$id){ purgedSpaceId workspace{ id spaceCount } } }",
            json!({ "id": space }),
        )
        .await;
    let p = &r.data()["purgeSpaceV2"];
    assert_eq!(p["purgedSpaceId"], space.as_str());
    assert_eq!(p["workspace"]["id"], ws.as_str());
    assert_eq!(p["workspace"]["spaceCount"], 0);

    let r = app
        .gql(
            "mutation($id:ID!){ deleteWorkspaceV2(id:$id){ deletedWorkspaceId } }",
            json!({ "id": ws }),
        )
        .await;
    assert_eq!(
        r.data()["deleteWorkspaceV2"]["deletedWorkspaceId"],
        ws.as_str()
    );

    // The replaced mutations say what to use instead.
    let r = app
        .gql(
            "{ __type(name: \"Mutation\"){ fields(includeDeprecated: true){ name isDeprecated deprecationReason } } }",
            json!({}),
        )
        .await;
    let fields = r.data()["__type"]["fields"].as_array().unwrap();
    for old in [
        "deleteMemory",
        "purgeSpace",
        "revokeApiKey",
        "revokeSpaceToken",
        "deleteWorkspace",
        "removeWorkspaceMember",
    ] {
        let f = fields.iter().find(|f| f["name"] == old).unwrap();
        assert_eq!(f["isDeprecated"], true, "{f}");
        let reason = f["deprecationReason"].as_str().unwrap();
        assert!(reason.contains(&format!("{old}V2")), "{reason}");
    }
}

#[tokio::test]
async fn memory_search_pages_through_the_same_ranking_as_search_memories() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let space = app.space_as(&key, "search-pages", json!({})).await;
    let texts: Vec<String> = (0..7)
        .map(|i| format!("the harbour lighthouse keeper wrote log entry {i}"))
        .collect();
    app.memories_as(&key, &space, &texts).await;
    let input = json!({ "query": "lighthouse keeper log", "spaceIds": [space], "mode": "KEYWORD", "limit": 7 });
    let flat = app.search_as(&key, input.clone()).await;
    let ranking = flat.hit_ids();
    assert_eq!(ranking.len(), 7, "{}", flat.body);

    let q = "query($i:SearchInput!,$f:Int,$a:String){ memorySearch(input:$i,first:$f,after:$a){ \
               edges{ cursor node{ score memory{ id } } } nodes{ memory{ id } } pageInfo{ hasNextPage hasPreviousPage endCursor } } }";
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for page in 0..4 {
        let r = app.gql(q, json!({ "i": input, "f": 3, "a": after })).await;
        let conn = &r.data()["memorySearch"];
        let ids: Vec<String> = conn["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["memory"]["id"].as_str().unwrap().to_string())
            .collect();
        let short: Vec<String> = conn["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["memory"]["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, short);
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], page > 0);
        seen.extend(ids);
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
    assert_eq!(seen, ranking, "pages concatenate to the flat ranking");

    let r = app
        .gql(q, json!({ "i": input, "f": 3, "a": "nonsense" }))
        .await;
    assert_eq!(r.code(), "INVALID_ARGUMENT", "{}", r.body);
    assert_eq!(r.error()["extensions"]["field"], "after");
    // `first` is clamped like every connection's `first` (to 100 here), never an error.
    let r = app.gql(q, json!({ "i": input, "f": 5000 })).await;
    assert_eq!(
        r.data()["memorySearch"]["edges"].as_array().unwrap().len(),
        7
    );
}
