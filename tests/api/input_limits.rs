//! Issue 17, items 6, 7, 13 and 14: chunking cannot amplify a memory, every list and string
//! input has a documented maximum (VALIDATION_ERROR naming the field, before any SQL), the flat
//! sharing lists of updateSpace replace only their own grants, and names are NFC-normalised
//! with invisible-only names refused.
use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};

fn long(n: usize) -> String {
    "x".repeat(n)
}

fn uuids(n: usize) -> Vec<String> {
    (0..n).map(|_| uuid::Uuid::now_v7().to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Item 6: chunking amplification

const CREATE_SPACE: &str =
    "mutation($i:CreateSpaceInput!){ createSpace(input:$i){ id chunking{ chunkSize chunkOverlap } } }";

async fn space_with_chunking(app: &TestApp, name: &str, size: i32, overlap: i32) -> GqlResponse {
    app.gql(
        CREATE_SPACE,
        json!({ "i": { "name": name, "chunking": { "chunkSize": size, "chunkOverlap": overlap } } }),
    )
    .await
}

#[tokio::test]
async fn a_chunk_overlap_leaving_a_step_under_a_quarter_of_the_size_is_a_validation_error_on_chunk_overlap(
) {
    let app = TestApp::spawn().await;
    for (size, overlap) in [(50, 49), (50, 38), (100, 76), (8000, 7999)] {
        let r = space_with_chunking(&app, &format!("c{size}-{overlap}"), size, overlap).await;
        assert_eq!(r.code(), "VALIDATION_ERROR", "{size}/{overlap}: {}", r.body);
        assert_eq!(r.field(), "chunking.chunkOverlap", "{size}/{overlap}");
    }
    // At the limit: step = ceil(size / 4).
    for (size, overlap) in [(50, 37), (100, 75), (8000, 6000)] {
        let r = space_with_chunking(&app, &format!("ok{size}"), size, overlap).await;
        assert_eq!(
            r.data()["createSpace"]["chunking"],
            json!({ "chunkSize": size, "chunkOverlap": overlap })
        );
    }
}

/// ~32 KB of short words: the worst case for a small chunk size.
fn words(chars: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() + 4 < chars {
        s.push_str(&format!("w{:02} ", i % 100));
        i += 1;
    }
    s.trim_end().to_string()
}

async fn memory_count(app: &TestApp, space: &str) -> i64 {
    let r = app
        .gql(
            "query($s:ID!){ space(id:$s){ memoryCount } }",
            json!({ "s": space }),
        )
        .await;
    r.data()["space"]["memoryCount"].as_i64().unwrap()
}

#[tokio::test]
async fn a_memory_that_would_be_cut_into_more_than_256_chunks_is_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let r = space_with_chunking(&app, "small-chunks", 50, 37).await;
    let space = r.data()["createSpace"]["id"].as_str().unwrap().to_string();
    let big = words(32_000);

    let single = app
        .create_memory_as(&app.admin_key, &space, &big, json!({}))
        .await;
    let batch = app
        .gql(
            "mutation($s:ID!,$i:[MemoryInput!]!){ createMemories(spaceId:$s,inputs:$i){ id } }",
            json!({ "s": space, "i": [{ "content": "fine" }, { "content": big }] }),
        )
        .await;

    assert_eq!(single.code(), "VALIDATION_ERROR", "{}", single.body);
    assert_eq!(single.field(), "content");
    let ext = &single.error()["extensions"];
    assert_eq!(ext["limit"], 256);
    assert!(ext["measured"].as_i64().unwrap() > 256, "{ext}");
    assert_eq!(batch.field(), "content");
    assert_eq!(batch.error()["extensions"]["index"], 1);
    assert_eq!(memory_count(&app, &space).await, 0, "all or nothing");

    // Within the cap it is stored; an update past the cap is refused and the memory kept.
    let fits = words(2000);
    let id = app
        .memory_as(&app.admin_key, &space, &fits, json!({}))
        .await;
    let update = app
        .gql(
            "mutation($id:ID!,$c:String!){ updateMemory(id:$id,input:{content:$c}){ id } }",
            json!({ "id": id, "c": big }),
        )
        .await;
    assert_eq!(update.field(), "content", "{}", update.body);
    let kept = app
        .gql(
            "query($id:ID!){ memory(id:$id){ content } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(kept.data()["memory"]["content"], fits);
}

#[tokio::test]
async fn the_largest_memory_fits_the_chunk_cap_with_the_default_chunking() {
    let app = TestApp::spawn().await;
    let space = app.space_as(&app.admin_key, "defaults", json!({})).await;
    let biggest = words(32_768);
    app.memory_as(&app.admin_key, &space, &biggest, json!({}))
        .await;
    assert_eq!(memory_count(&app, &space).await, 1);
}

// ---------------------------------------------------------------------------------------------
// Item 7: every list and string input has a maximum

struct Fixture {
    space: String,
    memory: String,
    user: String,
    workspace: String,
}

async fn fixture(app: &TestApp) -> Fixture {
    let admin = app.admin_key.clone();
    let space = app.space_as(&admin, "limits", json!({})).await;
    let memory = app.memory_as(&admin, &space, "a memory", json!({})).await;
    let (user, _) = app.user_in(&admin, "someone", false).await;
    let workspace = app.workspace_as(&admin, "limits-ws").await;
    Fixture {
        space,
        memory,
        user,
        workspace,
    }
}

/// One input over its maximum: the operation, its variables, the field the error must name,
/// and the code (VALIDATION_ERROR, or INVALID_ARGUMENT for cursors like any bad cursor).
struct Over {
    what: &'static str,
    query: &'static str,
    variables: Value,
    field: String,
    code: &'static str,
}

fn over(what: &'static str, query: &'static str, variables: Value, field: &str) -> Over {
    Over {
        what,
        query,
        variables,
        field: field.to_string(),
        code: "VALIDATION_ERROR",
    }
}

const SEARCH: &str = "query($i:SearchInput!){ searchMemories(input:$i){ score } }";
const CREATE: &str = "mutation($i:CreateSpaceInput!){ createSpace(input:$i){ id } }";
const UPDATE: &str = "mutation($id:ID!,$i:UpdateSpaceInput!){ updateSpace(id:$id,input:$i){ id } }";
const SHARE: &str = "mutation($id:ID!,$g:[GrantInput!]!){ shareSpace(id:$id,grants:$g){ id } }";
const UNSHARE: &str = "mutation($id:ID!,$g:[GrantInput!]!){ unshareSpace(id:$id,grants:$g){ id } }";
const SPACES: &str = "query($f:SpaceFilter){ spaces(filter:$f){ totalCount } }";
const SPACES_AFTER: &str = "query($a:String){ spaces(after:$a){ totalCount } }";
const WORKSPACES: &str = "query($f:WorkspaceFilter){ workspaces(filter:$f){ totalCount } }";
const WORKSPACES_AFTER: &str = "query($a:String){ workspaces(after:$a){ totalCount } }";
const MEMORIES: &str =
    "query($s:ID!,$f:MemoryFilterInput,$a:String){ space(id:$s){ memories(filter:$f,after:$a){ totalCount } } }";
const AUDIT: &str =
    "query($f:AuditFilter,$a:String){ auditEvents(filter:$f,after:$a){ totalCount } }";
const CREATE_WS: &str = "mutation($i:CreateWorkspaceInput!){ createWorkspace(input:$i){ id } }";
const UPDATE_WS: &str =
    "mutation($id:ID!,$i:UpdateWorkspaceInput!){ updateWorkspace(id:$id,input:$i){ id } }";
const CREATE_MEMORY: &str = "mutation($i:CreateMemoryInput!){ createMemory(input:$i){ id } }";
const CREATE_MEMORIES: &str =
    "mutation($s:ID!,$i:[MemoryInput!]!){ createMemories(spaceId:$s,inputs:$i){ id } }";
const UPDATE_MEMORY: &str =
    "mutation($id:ID!,$i:UpdateMemoryInput!){ updateMemory(id:$id,input:$i){ id } }";
const THREAD: &str = "mutation($s:ID!,$t:String!,$m:[ThreadMessageInput!]!){ \
     addThreadMessages(spaceId:$s,threadId:$t,messages:$m){ id } }";
const ROLE: &str = "mutation($n:String!){ createRole(input:{name:$n}){ id } }";
const DEPARTMENT: &str = "mutation($n:String!){ createDepartment(input:{name:$n}){ id } }";
const AGENT: &str =
    "mutation($h:String!,$n:String!){ createAgent(input:{handle:$h,name:$n}){ id } }";
const USER: &str = "mutation($n:String!,$e:String!){ createUser(input:{name:$n,email:$e}){ id } }";
const API_KEY: &str =
    "mutation($u:ID!,$n:String!){ createApiKey(input:{userId:$u,name:$n}){ key } }";
const TOKEN: &str =
    "mutation($s:ID!,$n:String){ createSpaceToken(spaceId:$s,permission:VIEW,name:$n){ token } }";
const AGENTS: &str = "query($h:String){ agents(handle:$h){ id } }";

fn grants(n: usize) -> Vec<Value> {
    uuids(n)
        .into_iter()
        .map(|id| json!({ "subjectKind": "USER", "subjectId": id, "permission": "VIEW" }))
        .collect()
}

fn table(fx: &Fixture) -> Vec<Over> {
    let s = fx.space.clone();
    let mut rows = vec![
        // searchMemories
        over(
            "40,000 spaceIds",
            SEARCH,
            json!({ "i": { "query": "q", "spaceIds": uuids(40_000) } }),
            "spaceIds",
        ),
        over(
            "1001 spaceIds",
            SEARCH,
            json!({ "i": { "query": "q", "spaceIds": uuids(1001) } }),
            "spaceIds",
        ),
        over(
            "search query",
            SEARCH,
            json!({ "i": { "query": long(4097) } }),
            "query",
        ),
        over(
            "search filter tags",
            SEARCH,
            json!({ "i": { "query": "q", "filter": { "tags": vec!["t"; 51] } } }),
            "filter.tags",
        ),
        over(
            "search filter tag",
            SEARCH,
            json!({ "i": { "query": "q", "filter": { "tags": [long(65)] } } }),
            "filter.tags[0]",
        ),
        over(
            "search filter threadId",
            SEARCH,
            json!({ "i": { "query": "q", "filter": { "threadId": long(256) } } }),
            "filter.threadId",
        ),
        // updateSpace / createSpace sharing lists
        over(
            "40,000 accessUsers",
            UPDATE,
            json!({ "id": s, "i": { "accessUsers": uuids(40_000) } }),
            "accessUsers",
        ),
        over(
            "update grants",
            UPDATE,
            json!({ "id": s, "i": { "grants": grants(1001) } }),
            "grants",
        ),
        over(
            "update grant id",
            UPDATE,
            json!({ "id": s, "i": { "grants": [{ "subjectKind": "USER", "subjectId": long(65) }] } }),
            "grants[0].subjectId",
        ),
        over(
            "create accessUsers",
            CREATE,
            json!({ "i": { "name": "n", "accessUsers": uuids(1001) } }),
            "accessUsers",
        ),
        over(
            "share grants",
            SHARE,
            json!({ "id": s, "g": grants(1001) }),
            "grants",
        ),
        over(
            "unshare grants",
            UNSHARE,
            json!({ "id": s, "g": grants(1001) }),
            "grants",
        ),
        // createSpace / updateSpace strings and lists
        over(
            "space name",
            CREATE,
            json!({ "i": { "name": long(256) } }),
            "name",
        ),
        over(
            "space name update",
            UPDATE,
            json!({ "id": s, "i": { "name": long(256) } }),
            "name",
        ),
        over(
            "space description",
            CREATE,
            json!({ "i": { "name": "n", "description": long(501) } }),
            "description",
        ),
        over(
            "space labels",
            CREATE,
            json!({ "i": { "name": "n", "labels": (0..65).map(|i| json!({ "key": format!("k{i}"), "value": "v" })).collect::<Vec<_>>() } }),
            "labels",
        ),
        over(
            "label key",
            CREATE,
            json!({ "i": { "name": "n", "labels": [{ "key": long(64), "value": "v" }] } }),
            "labels[0].key",
        ),
        over(
            "label value",
            CREATE,
            json!({ "i": { "name": "n", "labels": [{ "key": "k", "value": long(256) }] } }),
            "labels[0].value",
        ),
        over(
            "space tags",
            CREATE,
            json!({ "i": { "name": "n", "tags": (0..51).map(|i| format!("t{i}")).collect::<Vec<_>>() } }),
            "tags",
        ),
        over(
            "space tag",
            UPDATE,
            json!({ "id": s, "i": { "tags": [long(65)] } }),
            "tags[0]",
        ),
        over(
            "embedder",
            CREATE,
            json!({ "i": { "name": "n", "embedder": long(200_001) } }),
            "embedder",
        ),
        over(
            "embedder update",
            UPDATE,
            json!({ "id": s, "i": { "embedder": long(129) } }),
            "embedder",
        ),
        // spaces(filter)
        over(
            "space glob",
            SPACES,
            json!({ "f": { "name": long(256) } }),
            "filter.name",
        ),
        over(
            "space filter labels",
            SPACES,
            json!({ "f": { "labels": (0..65).map(|i| json!({ "key": format!("k{i}"), "value": "v" })).collect::<Vec<_>>() } }),
            "filter.labels",
        ),
        over(
            "space filter label key",
            SPACES,
            json!({ "f": { "labels": [{ "key": long(64), "value": "v" }] } }),
            "filter.labels[0].key",
        ),
        over(
            "space filter tags",
            SPACES,
            json!({ "f": { "tags": vec!["t"; 51] } }),
            "filter.tags",
        ),
        over(
            "space filter tag",
            SPACES,
            json!({ "f": { "tags": [long(65)] } }),
            "filter.tags[0]",
        ),
        // workspaces
        over(
            "200,001-character nameGlob",
            WORKSPACES,
            json!({ "f": { "nameGlob": long(200_001) } }),
            "filter.nameGlob",
        ),
        over(
            "workspace name",
            CREATE_WS,
            json!({ "i": { "name": long(101) } }),
            "name",
        ),
        over(
            "workspace description",
            CREATE_WS,
            json!({ "i": { "name": "w", "description": long(2001) } }),
            "description",
        ),
        over(
            "workspace name update",
            UPDATE_WS,
            json!({ "id": fx.workspace, "i": { "name": long(101) } }),
            "name",
        ),
        // memories
        over(
            "memory content",
            CREATE_MEMORY,
            json!({ "i": { "spaceId": s, "content": long(32_769) } }),
            "content",
        ),
        over(
            "memory tags",
            CREATE_MEMORY,
            json!({ "i": { "spaceId": s, "content": "c", "tags": (0..51).map(|i| format!("t{i}")).collect::<Vec<_>>() } }),
            "tags",
        ),
        over(
            "memory tag",
            CREATE_MEMORY,
            json!({ "i": { "spaceId": s, "content": "c", "tags": [long(65)] } }),
            "tags[0]",
        ),
        over(
            "memory threadId",
            CREATE_MEMORY,
            json!({ "i": { "spaceId": s, "content": "c", "threadId": long(256) } }),
            "threadId",
        ),
        over(
            "memory externalId",
            CREATE_MEMORY,
            json!({ "i": { "spaceId": s, "content": "c", "externalId": long(256) } }),
            "externalId",
        ),
        over(
            "memory metadata",
            CREATE_MEMORY,
            json!({ "i": { "spaceId": s, "content": "c", "metadata": { "m": long(16 * 1024) } } }),
            "metadata",
        ),
        over(
            "createMemories inputs",
            CREATE_MEMORIES,
            json!({ "s": s, "i": vec![json!({ "content": "c" }); 1001] }),
            "inputs",
        ),
        over(
            "updateMemory content",
            UPDATE_MEMORY,
            json!({ "id": fx.memory, "i": { "content": long(32_769) } }),
            "content",
        ),
        over(
            "updateMemory tags",
            UPDATE_MEMORY,
            json!({ "id": fx.memory, "i": { "tags": (0..51).map(|i| format!("t{i}")).collect::<Vec<_>>() } }),
            "tags",
        ),
        over(
            "thread messages",
            THREAD,
            json!({ "s": s, "t": "t", "m": vec![json!({ "role": "user", "content": "c" }); 1001] }),
            "messages",
        ),
        over(
            "thread id",
            THREAD,
            json!({ "s": s, "t": long(256), "m": [{ "role": "user", "content": "c" }] }),
            "threadId",
        ),
        over(
            "thread role",
            THREAD,
            json!({ "s": s, "t": "t", "m": [{ "role": long(65), "content": "c" }] }),
            "role",
        ),
        over(
            "memories filter tags",
            MEMORIES,
            json!({ "s": s, "f": { "tags": vec!["t"; 51] } }),
            "filter.tags",
        ),
        // directory
        over("role name", ROLE, json!({ "n": long(256) }), "name"),
        over(
            "department name",
            DEPARTMENT,
            json!({ "n": long(256) }),
            "name",
        ),
        over(
            "agent handle",
            AGENT,
            json!({ "h": long(64), "n": "a" }),
            "handle",
        ),
        over(
            "agent name",
            AGENT,
            json!({ "h": "a", "n": long(256) }),
            "name",
        ),
        over(
            "user name",
            USER,
            json!({ "n": long(256), "e": "u@example.com" }),
            "name",
        ),
        over(
            "user email",
            USER,
            json!({ "n": "u", "e": format!("{}@example.com", long(310)) }),
            "email",
        ),
        over(
            "api key name",
            API_KEY,
            json!({ "u": fx.user, "n": long(256) }),
            "name",
        ),
        over(
            "agents handle",
            AGENTS,
            json!({ "h": long(200_001) }),
            "handle",
        ),
        over(
            "space token name",
            TOKEN,
            json!({ "s": s, "n": long(256) }),
            "name",
        ),
        over(
            "audit action",
            AUDIT,
            json!({ "f": { "action": long(65) } }),
            "filter.action",
        ),
    ];
    // Every flat sharing list, one past the maximum.
    for list in [
        "accessUsers",
        "accessDepartments",
        "visibleToRoles",
        "editableByUsers",
        "editableByRoles",
        "allowedAgentIds",
        "allowedTenantIds",
    ] {
        rows.push(Over {
            what: "a flat sharing list",
            query: UPDATE,
            variables: json!({ "id": s, "i": { list: uuids(1001) } }),
            field: list.to_string(),
            code: "VALIDATION_ERROR",
        });
    }
    // Cursors: past the maximum they are bad cursors, like any other.
    let cursor = long(1025);
    for (what, query, variables) in [
        ("spaces cursor", SPACES_AFTER, json!({ "a": cursor })),
        (
            "workspaces cursor",
            WORKSPACES_AFTER,
            json!({ "a": cursor }),
        ),
        ("memories cursor", MEMORIES, json!({ "s": s, "a": cursor })),
        ("audit cursor", AUDIT, json!({ "a": cursor })),
    ] {
        rows.push(Over {
            what,
            query,
            variables,
            field: "after".into(),
            code: "INVALID_ARGUMENT",
        });
    }
    rows
}

#[tokio::test]
async fn every_list_and_string_input_over_its_maximum_is_refused_naming_the_field_without_writing()
{
    let app = TestApp::spawn().await;
    let fx = fixture(&app).await;
    app.warm(&app.admin_key).await;
    let mut failures = Vec::new();
    for row in table(&fx) {
        let writes = app.writes();
        let r = app.gql(row.query, row.variables.clone()).await;
        let codes = r.codes();
        let field = r.body["errors"][0]["extensions"]["field"].as_str();
        if r.status != 200 || codes != [row.code] || field != Some(row.field.as_str()) {
            let body = r.body.to_string();
            failures.push(format!(
                "{}: HTTP {}, codes {codes:?}, field {field:?} (want {} on {}): {}",
                row.what,
                r.status,
                row.code,
                row.field,
                &body[..body.len().min(300)]
            ));
        }
        if app.writes() != writes {
            failures.push(format!("{}: wrote to the database", row.what));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_list_inputs_that_broke_sql_are_refused_before_any_statement_runs() {
    let app = TestApp::spawn().await;
    let fx = fixture(&app).await;
    app.warm(&app.admin_key).await;
    let cases = [
        (
            SEARCH,
            json!({ "i": { "query": "q", "spaceIds": uuids(40_000) } }),
        ),
        (
            UPDATE,
            json!({ "id": fx.space, "i": { "accessUsers": uuids(40_000) } }),
        ),
        (SHARE, json!({ "id": fx.space, "g": grants(15_000) })),
        (WORKSPACES, json!({ "f": { "nameGlob": long(200_001) } })),
        (SPACES, json!({ "f": { "tags": vec!["t"; 40_000] } })),
    ];
    for (query, variables) in cases {
        // The counter is the whole server's, and background work (the expiry sweep, a
        // reconnecting listener) can land in a window now and then: a request that runs SQL
        // does so every time, so one clean attempt out of three proves it runs none.
        let mut ran = Vec::new();
        for _ in 0..3 {
            let before = app.statements();
            let r = app.gql(query, variables.clone()).await;
            assert_eq!(r.code(), "VALIDATION_ERROR", "{query}");
            ran.push(app.statements() - before);
            if ran.last() == Some(&0) {
                break;
            }
        }
        assert_eq!(
            ran.last(),
            Some(&0),
            "SQL ran for {query}: {ran:?} statements"
        );
    }
}

#[tokio::test]
async fn list_and_string_inputs_at_their_maximum_work() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let fx = fixture(&app).await;
    // 1000 spaceIds (the same readable space: what counts is the list's length).
    let search = app
        .gql(
            SEARCH,
            json!({ "i": { "query": "memory", "spaceIds": vec![fx.space.clone(); 1000] } }),
        )
        .await;
    assert!(search.data()["searchMemories"].is_array());
    // 1000 ids in a flat sharing list (one user, repeated: grants collapse per subject).
    let update = app
        .gql(
            "mutation($id:ID!,$i:UpdateSpaceInput!){ updateSpace(id:$id,input:$i){ grants{ subjectId } } }",
            json!({ "id": fx.space, "i": { "accessUsers": vec![fx.user.clone(); 1000] } }),
        )
        .await;
    assert_eq!(
        update.data()["updateSpace"]["grants"],
        json!([{ "subjectId": fx.user }])
    );
    let glob = app
        .gql(
            WORKSPACES,
            json!({ "f": { "nameGlob": format!("{}*", "?".repeat(254)) } }),
        )
        .await;
    assert_eq!(glob.data()["workspaces"]["totalCount"], 0);
    let filter = app
        .gql(
            SPACES,
            json!({ "f": { "tags": vec![long(64); 50], "name": long(255) } }),
        )
        .await;
    assert_eq!(filter.data()["spaces"]["totalCount"], 0);
    let token = app
        .gql(TOKEN, json!({ "s": fx.space, "n": long(255) }))
        .await;
    assert!(token.data()["createSpaceToken"]["token"].is_string());
    let role = app.gql(ROLE, json!({ "n": long(255) })).await;
    assert!(role.data()["createRole"]["id"].is_string());
    let thread = app
        .gql(
            THREAD,
            json!({ "s": fx.space, "t": long(255), "m": [{ "role": long(64), "content": "c" }] }),
        )
        .await;
    assert_eq!(
        thread.data()["addThreadMessages"].as_array().unwrap().len(),
        1
    );
    let audit = app
        .gql_as(Some(&admin), AUDIT, json!({ "f": { "action": long(64) } }))
        .await;
    assert_eq!(audit.data()["auditEvents"]["totalCount"], 0);
}

// ---------------------------------------------------------------------------------------------
// Item 13: a flat sharing list replaces only its own grants

const GRANTS: &str = "grants{ subjectKind subjectId permission }";

type GrantRow = (String, Option<String>, String);

fn rows_of(grants: &Value) -> BTreeSet<GrantRow> {
    grants
        .as_array()
        .unwrap_or_else(|| panic!("no grants: {grants}"))
        .iter()
        .map(|g| {
            (
                g["subjectKind"].as_str().unwrap().to_string(),
                g["subjectId"].as_str().map(String::from),
                g["permission"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn row(kind: &str, id: &str, permission: &str) -> GrantRow {
    (kind.into(), Some(id.into()), permission.into())
}

async fn update_grants(app: &TestApp, id: &str, input: Value) -> BTreeSet<GrantRow> {
    let r = app
        .gql(
            &format!(
                "mutation($id:ID!,$i:UpdateSpaceInput!){{ updateSpace(id:$id,input:$i){{ {GRANTS} }} }}"
            ),
            json!({ "id": id, "i": input }),
        )
        .await;
    rows_of(&r.data()["updateSpace"]["grants"])
}

#[tokio::test]
async fn update_space_with_access_users_alone_keeps_edit_users_tenant_and_other_grants() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (viewer, _) = app.user_in(&admin, "viewer", false).await;
    let (editor, _) = app.user_in(&admin, "editor", false).await;
    let (newcomer, _) = app.user_in(&admin, "newcomer", false).await;
    let role = app.role_in(&admin, "readers").await;
    let department = app.department_in(&admin, "ops").await;
    let tenant_key = app.other_org("elsewhere").await;
    let tenant = app.org_id_of(&tenant_key).await;
    let space = app
        .space_as(
            &admin,
            "shared",
            json!({
                "accessUsers": [viewer],
                "editableByUsers": [editor],
                "visibleToRoles": [role],
                "allowedTenantIds": [tenant],
                "grants": [{ "subjectKind": "DEPARTMENT", "subjectId": department, "permission": "EDIT" }],
            }),
        )
        .await;

    let after = update_grants(&app, &space, json!({ "accessUsers": [newcomer, editor] })).await;

    assert_eq!(
        after,
        BTreeSet::from([
            row("USER", &newcomer, "VIEW"),
            // Listed as a viewer too, but the EDIT grant of the untouched list stays.
            row("USER", &editor, "EDIT"),
            row("ROLE", &role, "VIEW"),
            row("TENANT", &tenant, "VIEW"),
            row("DEPARTMENT", &department, "EDIT"),
        ])
    );
    // An empty flat list clears only its own slot; `grants` replaces everything.
    let no_tenants = update_grants(&app, &space, json!({ "allowedTenantIds": [] })).await;
    assert!(!no_tenants.iter().any(|(k, ..)| k == "TENANT"));
    assert_eq!(no_tenants.len(), 4);
    let only = update_grants(
        &app,
        &space,
        json!({ "grants": [{ "subjectKind": "USER", "subjectId": viewer }] }),
    )
    .await;
    assert_eq!(only, BTreeSet::from([row("USER", &viewer, "VIEW")]));
}

// ---------------------------------------------------------------------------------------------
// Item 14: names are NFC-normalised; invisible-only names are blank

const INVISIBLE: &[&str] = &[
    "\u{200B}",
    "\u{200B}\u{200C}\u{200D}",
    "\u{FEFF}",
    " \u{2060} ",
    "\u{00AD}",
    "\u{3164}",
    "\u{202E}\u{202C}",
];

#[tokio::test]
async fn names_made_only_of_invisible_characters_are_blank_for_every_named_thing() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (user, _) = app.user_in(&admin, "holder", false).await;
    let space = app.space_as(&admin, "visible", json!({})).await;
    let workspace = app.workspace_as(&admin, "visible-ws").await;
    for name in INVISIBLE {
        let cases = [
            (
                "createSpace",
                app.gql(CREATE, json!({ "i": { "name": name } })).await,
            ),
            (
                "updateSpace",
                app.gql(UPDATE, json!({ "id": space, "i": { "name": name } }))
                    .await,
            ),
            (
                "createWorkspace",
                app.gql(CREATE_WS, json!({ "i": { "name": name } })).await,
            ),
            (
                "updateWorkspace",
                app.gql(UPDATE_WS, json!({ "id": workspace, "i": { "name": name } }))
                    .await,
            ),
            ("createRole", app.gql(ROLE, json!({ "n": name })).await),
            (
                "createDepartment",
                app.gql(DEPARTMENT, json!({ "n": name })).await,
            ),
            (
                "createAgent",
                app.gql(AGENT, json!({ "h": "bot", "n": name })).await,
            ),
            (
                "createUser",
                app.gql(USER, json!({ "n": name, "e": "x@example.com" }))
                    .await,
            ),
            (
                "createApiKey",
                app.gql(API_KEY, json!({ "u": user, "n": name })).await,
            ),
        ];
        for (what, r) in cases {
            assert_eq!(r.code(), "VALIDATION_ERROR", "{what} {name:?}: {}", r.body);
            assert_eq!(r.field(), "name", "{what} {name:?}");
        }
    }
}

#[tokio::test]
async fn nfc_and_nfd_spellings_of_a_name_are_the_same_name_for_the_duplicate_rule() {
    let app = TestApp::spawn().await;
    let nfc = "Caf\u{e9} \u{212b}ngstr\u{f6}m"; // é, Å (angstrom sign → Å), ö
    let nfd = "Cafe\u{301} A\u{30a}ngstro\u{308}m";
    let composed = "Caf\u{e9} \u{c5}ngstr\u{f6}m";

    let space = app
        .gql(
            "mutation($n:String!){ createSpace(input:{name:$n}){ name } }",
            json!({ "n": nfc }),
        )
        .await;
    assert_eq!(space.data()["createSpace"]["name"], composed, "stored NFC");
    let trailing = format!("{nfd}\u{200B}");
    for (what, query, variables) in [
        ("space", CREATE, json!({ "i": { "name": nfd } })),
        (
            "space, zero-width tail",
            CREATE,
            json!({ "i": { "name": trailing } }),
        ),
    ] {
        let r = app.gql(query, variables).await;
        assert_eq!(r.code(), "ALREADY_EXISTS", "{what}: {}", r.body);
    }
    for (what, query, first, second) in [
        (
            "workspace",
            CREATE_WS,
            json!({ "i": { "name": nfc } }),
            json!({ "i": { "name": nfd } }),
        ),
        ("role", ROLE, json!({ "n": nfc }), json!({ "n": nfd })),
        (
            "department",
            DEPARTMENT,
            json!({ "n": nfc }),
            json!({ "n": nfd }),
        ),
    ] {
        let created = app.gql(query, first).await;
        created.data();
        let again = app.gql(query, second).await;
        assert_eq!(again.code(), "ALREADY_EXISTS", "{what}: {}", again.body);
    }
    // A glob in either form finds the stored name.
    let found = app
        .gql(
            "query($n:String!){ spaces(filter:{name:$n}){ totalCount } }",
            json!({ "n": nfd }),
        )
        .await;
    assert_eq!(found.data()["spaces"]["totalCount"], 1);
    let renamed = app
        .gql(
            "mutation($i:CreateSpaceInput!){ createSpace(input:$i){ id } }",
            json!({ "i": { "name": "other" } }),
        )
        .await;
    let other = renamed.data()["createSpace"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let clash = app
        .gql(UPDATE, json!({ "id": other, "i": { "name": nfd } }))
        .await;
    assert_eq!(clash.code(), "ALREADY_EXISTS", "{}", clash.body);
}

/// Stores `name` in `table` row `id` with plain SQL, as code before normalisation could.
async fn store_raw_name(app: &TestApp, table: &str, id: &str, name: &str) {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    let backend = app.db.write.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => format!("UPDATE {table} SET name = $1 WHERE id = $2"),
        _ => format!("UPDATE {table} SET name = ? WHERE id = ?"),
    };
    let id = uuid::Uuid::parse_str(id).expect("uuid");
    let done = app
        .db
        .write
        .execute(Statement::from_sql_and_values(
            backend,
            sql,
            [name.into(), id.into()],
        ))
        .await
        .expect("raw update");
    assert_eq!(done.rows_affected(), 1, "{table} {id}");
}

async fn stored_name(app: &TestApp, table: &str, id: &str) -> String {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    let backend = app.db.write.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => format!("SELECT name FROM {table} WHERE id = $1"),
        _ => format!("SELECT name FROM {table} WHERE id = ?"),
    };
    let id = uuid::Uuid::parse_str(id).expect("uuid");
    let row = app
        .db
        .write
        .query_one(Statement::from_sql_and_values(backend, sql, [id.into()]))
        .await
        .expect("select")
        .expect("row");
    row.try_get("", "name").expect("name")
}

#[tokio::test]
async fn the_name_migration_nfc_normalises_stored_names_and_suffixes_the_ones_that_collide() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let cafe = "Caf\u{e9}";
    let cafe_nfd = "Cafe\u{301}";
    let kept = app.space_as(&admin, cafe, json!({})).await;
    let clash = app.space_as(&admin, "clash", json!({})).await;
    let lone = app.space_as(&admin, "lone", json!({})).await;
    let blank = app.space_as(&admin, "blank", json!({})).await;
    let deleted = app.space_as(&admin, "deleted", json!({})).await;
    app.gql(
        "mutation($id:ID!){ deleteSpace(id:$id){ id } }",
        json!({ "id": deleted }),
    )
    .await
    .data();
    let workspace = app.workspace_as(&admin, "team").await;
    let role = app.role_in(&admin, "analyst").await;
    let role_too = app.role_in(&admin, "other").await;
    let (user, _) = app.user("bob", false).await;
    // As names were stored before item 14: decomposed, padded with invisible characters, or
    // made of them only (NFC and NFD spellings side by side under one unique index).
    for (table, id, name) in [
        ("spaces", &clash, format!("{cafe_nfd}\u{200B}")),
        ("spaces", &lone, "A\u{30a}ngstro\u{308}m".to_string()),
        ("spaces", &blank, "\u{200B}\u{2060}\u{FEFF}".to_string()),
        ("spaces", &deleted, cafe_nfd.to_string()),
        ("workspaces", &workspace, "\u{200B}Te\u{301}am ".to_string()),
        ("roles", &role, "Analyste\u{301}".to_string()),
        ("roles", &role_too, "Analyste\u{301}\u{200D}".to_string()),
        ("users", &user, "Bo\u{308}b".to_string()),
    ] {
        store_raw_name(&app, table, id, &name).await;
    }

    crate::common::migrate_down_through(&app.db, "m20261202_000009_nfc_names").await;
    {
        use migration::MigratorTrait;
        migration::Migrator::up(&app.db.write, None)
            .await
            .expect("migrations up");
    }

    for (table, id, want) in [
        ("spaces", &kept, cafe.to_string()),
        ("spaces", &clash, format!("{cafe} (2)")),
        ("spaces", &lone, "\u{c5}ngstr\u{f6}m".to_string()),
        ("spaces", &blank, "unnamed".to_string()),
        // Soft-deleted spaces do not hold their name: no suffix.
        ("spaces", &deleted, cafe.to_string()),
        ("workspaces", &workspace, "T\u{e9}am".to_string()),
        ("roles", &role, "Analyst\u{e9}".to_string()),
        ("roles", &role_too, "Analyst\u{e9} (2)".to_string()),
        ("users", &user, "B\u{f6}b".to_string()),
    ] {
        assert_eq!(stored_name(&app, table, id).await, want, "{table} {id}");
    }
    // The normalised names take part in the duplicate rule as new ones do.
    let again = app
        .gql(
            "mutation($n:String!){ createSpace(input:{name:$n}){ id } }",
            json!({ "n": cafe_nfd }),
        )
        .await;
    assert_eq!(again.code(), "ALREADY_EXISTS");
}
