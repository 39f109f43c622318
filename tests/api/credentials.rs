//! Issue 17 "Abuse-proof", credentials: a space token works only while its creator holds OWNER
//! on its space (HTTP and WebSocket) and shows `createdBy`; a space token sees no personal data;
//! an operator-chosen admin key has at least 24 characters and none of them in clear in the
//! database; a different `MEMSPACE_ADMIN_KEY` at restart replaces the old admin key, and says so.
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};
use crate::realtime::{gql_at, Ws};
use crate::replicas::{fresh_pg_schema, Server};
use entity::{api_key, space_token};

const WAIT: Duration = Duration::from_secs(10);
const WRITE: &str =
    "mutation($s:ID!,$c:String!){ createMemory(input:{spaceId:$s,content:$c}){ id } }";
const VIEWER: &str = "{ viewer { principal { __typename } } }";

async fn write_as(app: &TestApp, key: &str, space: &str, content: &str) -> GqlResponse {
    app.gql_as(Some(key), WRITE, json!({ "s": space, "c": content }))
        .await
}

fn assert_refused(r: &GqlResponse) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.code(), "UNAUTHENTICATED");
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

/// `space.tokens { id createdBy }` as the bootstrap admin: token id -> (typename, id).
async fn creators(app: &TestApp, space: &str) -> Vec<(String, Value)> {
    let r = app
        .gql(
            "query($s:ID!){ space(id:$s){ tokens{ id createdBy{ __typename \
               ... on User{ id } ... on Agent{ id } } } } }",
            json!({ "s": space }),
        )
        .await;
    r.data()["space"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_string(),
                t["createdBy"].clone(),
            )
        })
        .collect()
}

fn created_by<'a>(creators: &'a [(String, Value)], token: &str) -> &'a Value {
    &creators
        .iter()
        .find(|(id, _)| id == token)
        .unwrap_or_else(|| panic!("token {token} not listed"))
        .1
}

/// A workspace of the bootstrap admin, a PRIVATE space of hers in it, and carol, a workspace
/// ADMIN (OWNER on the space through the workspace, not an org admin): (workspace, space,
/// carol's id, carol's key).
async fn workspace_with_admin(app: &TestApp) -> (String, String, String, String) {
    let (carol, carol_key) = app.user("carol", false).await;
    let workspace = app.workspace_as(&app.admin_key, "Team").await;
    app.add_workspace_member_as(&app.admin_key, &workspace, &carol, "ADMIN")
        .await
        .data();
    let space = app
        .space_as(
            &app.admin_key,
            "team-space",
            json!({ "workspaceId": workspace, "accessMode": "PRIVATE" }),
        )
        .await;
    (workspace, space, carol, carol_key)
}

async fn remove_member(app: &TestApp, workspace: &str, user: &str) {
    app.gql(
        "mutation($w:ID!,$u:ID!){ removeWorkspaceMember(workspaceId:$w,userId:$u) }",
        json!({ "w": workspace, "u": user }),
    )
    .await
    .data();
}

async fn set_role(app: &TestApp, workspace: &str, user: &str, role: &str) {
    app.gql(
        "mutation($w:ID!,$u:ID!,$r:WorkspaceRole!){ \
           updateWorkspaceMember(workspaceId:$w,userId:$u,role:$r){ role } }",
        json!({ "w": workspace, "u": user, "r": role }),
    )
    .await
    .data();
}

// ---------------------------------------------------------------------------------------------
// Item 9: a space token works only while its creator holds OWNER on the space

#[tokio::test]
async fn a_workspace_admins_token_stops_working_once_she_is_removed_from_the_workspace() {
    let app = TestApp::spawn().await;
    let (workspace, space, carol, carol_key) = workspace_with_admin(&app).await;
    let (carols_id, carols) = app.space_token_as(&carol_key, &space, "EDIT", None).await;
    let (owners_id, owners) = app
        .space_token_as(&app.admin_key.clone(), &space, "EDIT", None)
        .await;
    write_as(&app, &carols, &space, "while carol is ADMIN")
        .await
        .data();
    let listed = creators(&app, &space).await;
    assert_eq!(
        created_by(&listed, &carols_id),
        &json!({ "__typename": "User", "id": carol })
    );
    assert_eq!(created_by(&listed, &owners_id)["__typename"], "User");
    assert_ne!(created_by(&listed, &owners_id)["id"], json!(carol));

    remove_member(&app, &workspace, &carol).await;

    assert_refused(&write_as(&app, &carols, &space, "after removal").await);
    let read = app
        .gql_as(
            Some(&carols),
            "query($s:ID!){ space(id:$s){ id } }",
            json!({ "s": space }),
        )
        .await;
    assert_refused(&read);
    // The owner's own token is not affected.
    write_as(&app, &owners, &space, "owner's token")
        .await
        .data();
    assert_eq!(memory_count(&app, &space).await, 2);
}

#[tokio::test]
async fn a_token_follows_its_creators_current_role_demoted_it_stops_promoted_it_works() {
    let app = TestApp::spawn().await;
    let (workspace, space, carol, carol_key) = workspace_with_admin(&app).await;
    let (_, token) = app.space_token_as(&carol_key, &space, "VIEW", None).await;
    let read = "query($s:ID!){ space(id:$s){ id } }";
    app.gql_as(Some(&token), read, json!({ "s": space }))
        .await
        .data();

    // EDITOR gives EDIT on the workspace's spaces, not OWNER.
    set_role(&app, &workspace, &carol, "EDITOR").await;
    assert_refused(&app.gql_as(Some(&token), read, json!({ "s": space })).await);

    set_role(&app, &workspace, &carol, "OWNER").await;
    app.gql_as(Some(&token), read, json!({ "s": space }))
        .await
        .data();
}

#[tokio::test]
async fn a_socket_opened_with_a_token_closes_with_4403_when_its_creator_loses_owner() {
    let app = TestApp::spawn().await;
    let (workspace, space, carol, carol_key) = workspace_with_admin(&app).await;
    let (_, token) = app.space_token_as(&carol_key, &space, "EDIT", None).await;
    let mut ws = Ws::bearer(&app.url, &token).await;
    ws.send(json!({
        "id": "1", "type": "subscribe",
        "payload": { "query": WRITE, "variables": { "s": space, "c": "on the socket" } },
    }))
    .await;
    let answer = ws.frame(WAIT).await.expect("an answer").expect("open");
    assert_eq!(answer["type"], "next", "{answer}");
    assert!(answer["payload"]["errors"].is_null(), "{answer}");

    remove_member(&app, &workspace, &carol).await;

    // Closed as soon as the change is announced, without waiting for the next operation.
    let started = Instant::now();
    let code = loop {
        match ws.frame(WAIT.saturating_sub(started.elapsed())).await {
            None => panic!("the socket stayed open for {WAIT:?}"),
            Some(Err(code)) => break code,
            Some(Ok(m)) => assert_ne!(m["type"], "next", "ran after the removal: {m}"),
        }
    };
    assert_eq!(code, Some(4403));
    // And a new socket with that token is refused at connection_init.
    let mut again = Ws::open(
        &app.url,
        json!({ "authorization": format!("Bearer {token}") }),
    )
    .await;
    assert!(matches!(again.frame(WAIT).await, Some(Err(Some(4403)))));
    assert_eq!(memory_count(&app, &space).await, 1);
}

#[tokio::test]
async fn an_agents_token_names_the_agent_as_its_creator_and_works_while_it_owns_the_space() {
    let app = TestApp::spawn().await;
    let (agent, agent_key) = app.agent("scribe").await;
    let space = app.space_as(&agent_key, "agent-space", json!({})).await;
    let (token_id, token) = app.space_token_as(&agent_key, &space, "EDIT", None).await;
    write_as(&app, &token, &space, "by the agent's token")
        .await
        .data();
    let listed = creators(&app, &space).await;
    assert_eq!(
        created_by(&listed, &token_id),
        &json!({ "__typename": "Agent", "id": agent })
    );
    // Only OWNER sees tokens, so createdBy is never shown to the token itself.
    let r = app
        .gql_as(
            Some(&token),
            "query($s:ID!){ space(id:$s){ id tokens{ id } } }",
            json!({ "s": space }),
        )
        .await;
    assert_eq!(r.code(), "OWNER_ONLY");
}

#[tokio::test]
async fn tokens_minted_before_the_migration_by_an_unknown_creator_count_as_the_owners() {
    let app = TestApp::spawn().await;
    let (alice, alice_key) = app.user("alice", false).await;
    let space = app.space_as(&alice_key, "legacy", json!({})).await;
    let (orphan_id, orphan) = app.space_token_as(&alice_key, &space, "EDIT", None).await;
    let (agent, agent_key) = app.agent("legacy-agent").await;
    let agents_space = app.space_as(&agent_key, "legacy-agent", json!({})).await;
    let (agents_id, agents) = app
        .space_token_as(&agent_key, &agents_space, "VIEW", None)
        .await;

    // The database as it was before the credentials migration: no created_by_kind, and a
    // token whose created_by names nobody.
    crate::common::migrate_down_through(&app.db, "m20261202_000008_credentials").await;
    space_token::Entity::update_many()
        .col_expr(
            space_token::Column::CreatedBy,
            Expr::value(uuid::Uuid::now_v7()),
        )
        .filter(space_token::Column::Id.eq(uuid::Uuid::parse_str(&orphan_id).unwrap()))
        .exec(&app.db.write)
        .await
        .expect("orphan the token");
    let restarted = app.reopen(|_| {}).await;

    let listed = creators(&restarted, &space).await;
    assert_eq!(
        created_by(&listed, &orphan_id),
        &json!({ "__typename": "User", "id": alice })
    );
    write_as(&restarted, &orphan, &space, "still works")
        .await
        .data();
    let listed = creators(&restarted, &agents_space).await;
    assert_eq!(
        created_by(&listed, &agents_id),
        &json!({ "__typename": "Agent", "id": agent })
    );
    restarted
        .gql_as(
            Some(&agents),
            "query($s:ID!){ space(id:$s){ id } }",
            json!({ "s": agents_space }),
        )
        .await
        .data();
}

// ---------------------------------------------------------------------------------------------
// Item 11: a space token reaches only its space, personal data included

#[tokio::test]
async fn a_space_token_sees_no_email_roles_or_departments_of_the_users_it_reaches() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (alice, alice_key) = app.user("alice", false).await;
    let role = app.role_in(&admin, "analyst").await;
    let department = app.department_in(&admin, "research").await;
    app.assign_role_as(&admin, &alice, &role).await;
    app.assign_department_as(&admin, &alice, &department).await;
    let space = app.space_as(&alice_key, "alice's", json!({})).await;
    app.memory_as(&alice_key, &space, "written by alice", json!({}))
        .await;
    let (_, token) = app.space_token_as(&alice_key, &space, "VIEW", None).await;
    let person = "name email roles{ id } departments{ id }";
    let query = format!(
        "query($s:ID!){{ space(id:$s){{ owner{{ ... on User{{ {person} }} }} \
           memories{{ edges{{ node{{ author{{ ... on User{{ {person} }} }} }} }} }} }} }}"
    );

    let by_token = app
        .gql_as(Some(&token), &query, json!({ "s": space }))
        .await;
    let by_colleague = app
        .gql_as(Some(&admin), &query, json!({ "s": space }))
        .await;

    let colleague = &by_colleague.data()["space"];
    assert_eq!(colleague["owner"]["roles"], json!([{ "id": role }]));
    assert!(colleague["owner"]["email"].is_string());
    let seen = &by_token.data()["space"];
    let author = &seen["memories"]["edges"][0]["node"]["author"];
    for user in [&seen["owner"], author] {
        assert_eq!(user["name"], "alice");
        assert_eq!(user["email"], Value::Null, "{user}");
        assert_eq!(user["roles"], json!([]), "{user}");
        assert_eq!(user["departments"], json!([]), "{user}");
    }
}

// ---------------------------------------------------------------------------------------------
// Item 10: an operator-chosen admin key is long and has nothing in clear in the database

async fn stored_prefixes(app: &TestApp) -> Vec<(String, String)> {
    api_key::Entity::find()
        .all(&app.db.read)
        .await
        .expect("api keys")
        .into_iter()
        .map(|k| (k.origin, k.prefix))
        .collect()
}

#[tokio::test]
async fn a_chosen_admin_key_keeps_none_of_its_characters_in_the_database() {
    let app = TestApp::spawn().await;
    let (_, user_key) = app.user("bob", false).await;
    app.gql(VIEWER, json!({})).await.data();

    let stored = stored_prefixes(&app).await;
    let bootstrap: Vec<&String> = stored
        .iter()
        .filter(|(origin, _)| origin == "BOOTSTRAP")
        .map(|(_, prefix)| prefix)
        .collect();
    assert_eq!(bootstrap, [""], "{stored:?}");
    // Generated keys keep their recognisable prefix (`msk_` and 8 of 43 random characters).
    assert!(
        stored
            .iter()
            .any(|(o, p)| o == "API" && p.len() == 12 && user_key.starts_with(p.as_str())),
        "{stored:?}"
    );
}

#[tokio::test]
async fn a_migration_cuts_the_clear_prefix_stored_for_a_chosen_admin_key() {
    let app = TestApp::spawn().await;
    let (_, user_key) = app.user("bob", false).await;
    let clear: String = app.admin_key.chars().take(12).collect();
    crate::common::migrate_down_through(&app.db, "m20261202_000008_credentials").await;
    // As the old code stored it: the first 12 characters of the chosen key.
    api_key::Entity::update_many()
        .col_expr(api_key::Column::Prefix, Expr::value(clear.clone()))
        .filter(api_key::Column::Name.eq("admin"))
        .exec(&app.db.write)
        .await
        .expect("old prefix");

    let restarted = app.reopen(|_| {}).await;

    let stored = stored_prefixes(&restarted).await;
    assert!(
        stored.iter().all(|(_, p)| !p.starts_with(&clear[..4])),
        "{stored:?}"
    );
    assert!(
        stored.contains(&("BOOTSTRAP".into(), String::new())),
        "{stored:?}"
    );
    assert!(
        stored
            .iter()
            .any(|(o, p)| o == "API" && user_key.starts_with(p.as_str())),
        "{stored:?}"
    );
    restarted.gql(VIEWER, json!({})).await.data();
    // The migration found the admin key: a new MEMSPACE_ADMIN_KEY replaces it.
    let rotated = restarted
        .reopen_as("a-new-admin-key-after-the-migration")
        .await
        .expect("restart with a new key");
    rotated.gql(VIEWER, json!({})).await.data();
    assert_refused(
        &rotated
            .gql_as(Some(&app.admin_key.clone()), VIEWER, json!({}))
            .await,
    );
}

/// A database URL for a `memspace serve` child: a fresh PostgreSQL schema or an SQLite file in
/// `dir`.
async fn child_database(dir: &Path) -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => fresh_pg_schema(&base).await,
        _ => format!("sqlite://{}?mode=rwc", dir.join("child.db").display()),
    }
}

/// Runs `memspace serve` with `admin_key` until it exits (within 60 s): (success, stderr).
fn serve_until_exit(database_url: &str, admin_key: &str) -> (bool, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_memspace"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database_url])
        .env("MEMSPACE_ADMIN_KEY", admin_key)
        .env("MEMSPACE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn memspace serve");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("child status") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err).ok();
            }
            return (status.success(), err);
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "memspace serve with a {}-character key kept running",
                admin_key.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_chosen_admin_key_shorter_than_24_characters_stops_the_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let url = child_database(dir.path()).await;
    for short in ["0123456789abcdef", "0123456789abcdef0123456"] {
        let (ok, stderr) = serve_until_exit(&url, short);
        assert!(!ok, "started with a {}-character key", short.len());
        assert!(
            stderr.contains("MEMSPACE_ADMIN_KEY") && stderr.contains("24"),
            "unclear message: {stderr}"
        );
        assert!(!stderr.contains(short), "the key was printed: {stderr}");
    }
    let key = "0123456789abcdef01234567";
    let server = Server::start("creds-24", &url, key, dir.path(), &[]).await;
    let client = reqwest::Client::new();
    gql_at(&client, &server.url, key, VIEWER, json!({}))
        .await
        .data();
}

// ---------------------------------------------------------------------------------------------
// Item 15: a different MEMSPACE_ADMIN_KEY at restart replaces the old admin key, and says so

#[tokio::test]
async fn restarting_with_a_different_admin_key_replaces_the_old_one_and_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = child_database(dir.path()).await;
    let client = reqwest::Client::new();
    let old = format!("first-admin-key-{}", uuid::Uuid::now_v7().simple());
    let new = format!("second-admin-key-{}", uuid::Uuid::now_v7().simple());
    let (user_key, token) = {
        let first = Server::start("creds-first", &url, &old, dir.path(), &[]).await;
        let app_key = |r: GqlResponse| {
            r.data()["createApiKey"]["key"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let user = gql_at(
            &client,
            &first.url,
            &old,
            "mutation{ createUser(input:{name:\"u\",email:\"u@example.com\"}){ id } }",
            json!({}),
        )
        .await;
        let user_id = user.data()["createUser"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let user_key = app_key(
            gql_at(
                &client,
                &first.url,
                &old,
                "mutation($u:ID!){ createApiKey(input:{userId:$u,name:\"k\"}){ key } }",
                json!({ "u": user_id }),
            )
            .await,
        );
        let space = gql_at(
            &client,
            &first.url,
            &old,
            "mutation{ createSpace(input:{name:\"s\"}){ id } }",
            json!({}),
        )
        .await;
        let space = space.data()["createSpace"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let token = gql_at(
            &client,
            &first.url,
            &old,
            "mutation($s:ID!){ createSpaceToken(spaceId:$s,permission:VIEW){ token } }",
            json!({ "s": space }),
        )
        .await;
        let token = token.data()["createSpaceToken"]["token"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            !first.log_tail().contains("rotated"),
            "{}",
            first.log_tail()
        );
        (user_key, token)
    };

    let second = Server::start("creds-second", &url, &new, dir.path(), &[]).await;

    let me = gql_at(
        &client,
        &second.url,
        &new,
        "{ viewer{ principal{ ... on User{ isAdmin } } organization{ handle } } }",
        json!({}),
    )
    .await;
    assert_eq!(me.data()["viewer"]["principal"]["isAdmin"], true);
    assert_eq!(me.data()["viewer"]["organization"]["handle"], "default");
    let refused = gql_at(&client, &second.url, &old, VIEWER, json!({})).await;
    assert_refused(&refused);
    let log = second.log_tail();
    assert!(
        log.contains("admin key rotated"),
        "no rotation in the log:\n{log}"
    );
    assert!(
        !log.contains(&new) && !log.contains(&old),
        "a key was logged:\n{log}"
    );
    // Other keys, and tokens the old admin key minted (the admin still holds OWNER), stay.
    gql_at(&client, &second.url, &user_key, VIEWER, json!({}))
        .await
        .data();
    gql_at(
        &client,
        &second.url,
        &token,
        "{ spaces{ totalCount } }",
        json!({}),
    )
    .await
    .data();
    drop(second);

    // The same key again: nothing to rotate.
    let third = Server::start("creds-third", &url, &new, dir.path(), &[]).await;
    gql_at(&client, &third.url, &new, VIEWER, json!({}))
        .await
        .data();
    assert!(
        !third.log_tail().contains("rotated"),
        "{}",
        third.log_tail()
    );
    drop(third);

    // The revoked key cannot be brought back by configuration.
    let (ok, stderr) = serve_until_exit(&url, &old);
    assert!(!ok, "started with a revoked admin key");
    assert!(stderr.contains("revoked"), "{stderr}");
}
