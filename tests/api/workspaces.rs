//! Workspaces: create/update/delete and their validation, name uniqueness (also under
//! concurrency), delete with and without force, members and roles (the OWNER role's guards, the
//! last owner), who sees which workspace, spaces in workspaces (create, move, access by role) and
//! the batched counts.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};

macro_rules! workspace_fields {
    () => {
        "id name description workspaceType documentUploadMethod organization{ id } viewerRole \
         spaceCount memoryCount usedStorage createdAt updatedAt"
    };
}

const CREATE: &str = concat!(
    "mutation($i:CreateWorkspaceInput!){ createWorkspace(input:$i){ ",
    workspace_fields!(),
    " } }"
);
const GET: &str = concat!(
    "query($id:ID!){ workspace(id:$id){ ",
    workspace_fields!(),
    " } }"
);
const UPDATE: &str = concat!(
    "mutation($id:ID!,$i:UpdateWorkspaceInput!){ updateWorkspace(id:$id,input:$i){ ",
    workspace_fields!(),
    " } }"
);
const LIST: &str = "query($first:Int,$after:String,$filter:WorkspaceFilter){ \
    workspaces(first:$first,after:$after,filter:$filter){ \
      totalCount pageInfo{ hasNextPage hasPreviousPage endCursor } \
      edges{ cursor node{ id name viewerRole } } } }";
const MEMBERS: &str = "query($id:ID!,$first:Int,$after:String){ workspace(id:$id){ \
    members(first:$first,after:$after){ totalCount pageInfo{ hasNextPage endCursor } \
      edges{ node{ role user{ id } } } } } }";
const UPDATE_MEMBER: &str = "mutation($w:ID!,$u:ID!,$r:WorkspaceRole!){ \
    updateWorkspaceMember(workspaceId:$w,userId:$u,role:$r){ role user{ id } } }";
const REMOVE_MEMBER: &str =
    "mutation($w:ID!,$u:ID!){ removeWorkspaceMember(workspaceId:$w,userId:$u) }";
const MOVE: &str =
    "mutation($id:ID!,$w:ID){ moveSpace(id:$id,workspaceId:$w){ id workspace{ id } } }";
const SPACE: &str =
    "query($id:ID!){ space(id:$id){ id viewerPermission deletedAt workspace{ id } } }";
const SPACES: &str = "query($f:SpaceFilter){ spaces(first:100,filter:$f){ totalCount \
    edges{ node{ id deletedAt } } } }";
const COUNTS: &str = "query($id:ID!){ workspace(id:$id){ spaceCount memoryCount usedStorage } }";

async fn create(app: &TestApp, key: &str, input: Value) -> GqlResponse {
    app.gql_as(Some(key), CREATE, json!({ "i": input })).await
}

async fn get(app: &TestApp, key: &str, id: &str) -> GqlResponse {
    app.gql_as(Some(key), GET, json!({ "id": id })).await
}

async fn update(app: &TestApp, key: &str, id: &str, input: Value) -> GqlResponse {
    app.gql_as(Some(key), UPDATE, json!({ "id": id, "i": input }))
        .await
}

/// `deleteWorkspace(id)`, or with `force: <force>` when given.
async fn delete(app: &TestApp, key: &str, id: &str, force: Option<bool>) -> GqlResponse {
    let query = match force {
        None => "mutation($id:ID!){ deleteWorkspace(id:$id) }".to_string(),
        Some(f) => format!("mutation($id:ID!){{ deleteWorkspace(id:$id,force:{f}) }}"),
    };
    app.gql_as(Some(key), &query, json!({ "id": id })).await
}

async fn list(app: &TestApp, key: &str, vars: Value) -> GqlResponse {
    app.gql_as(Some(key), LIST, vars).await
}

/// The workspace ids of a `workspaces` page, in order.
fn listed(r: &GqlResponse) -> Vec<String> {
    r.data()["workspaces"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no workspaces in {}", r.body))
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn listed_names(r: &GqlResponse) -> Vec<String> {
    r.data()["workspaces"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["name"].as_str().unwrap().to_string())
        .collect()
}

async fn update_member(app: &TestApp, key: &str, ws: &str, user: &str, role: &str) -> GqlResponse {
    app.gql_as(
        Some(key),
        UPDATE_MEMBER,
        json!({ "w": ws, "u": user, "r": role }),
    )
    .await
}

async fn remove_member(app: &TestApp, key: &str, ws: &str, user: &str) -> GqlResponse {
    app.gql_as(Some(key), REMOVE_MEMBER, json!({ "w": ws, "u": user }))
        .await
}

/// (user id, role) of every member, in join order, as seen by the bootstrap org admin.
async fn member_roles(app: &TestApp, ws: &str) -> Vec<(String, String)> {
    let r = app.gql(MEMBERS, json!({ "id": ws, "first": 100 })).await;
    r.data()["workspace"]["members"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"]["user"]["id"].as_str().unwrap().to_string(),
                e["node"]["role"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn roles(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(u, r)| (u.to_string(), r.to_string()))
        .collect()
}

async fn move_space(app: &TestApp, key: &str, space: &str, ws: Option<&str>) -> GqlResponse {
    app.gql_as(Some(key), MOVE, json!({ "id": space, "w": ws }))
        .await
}

async fn space(app: &TestApp, key: &str, id: &str) -> GqlResponse {
    app.gql_as(Some(key), SPACE, json!({ "id": id })).await
}

/// The ids `spaces(filter)` lists for `key`, and its totalCount.
async fn space_ids(app: &TestApp, key: &str, filter: Value) -> (Vec<String>, i64) {
    let r = app.gql_as(Some(key), SPACES, json!({ "f": filter })).await;
    let conn = &r.data()["spaces"];
    let ids = conn["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_string())
        .collect();
    (ids, conn["totalCount"].as_i64().unwrap())
}

/// (spaceCount, memoryCount, usedStorage) of a workspace, as the bootstrap org admin.
async fn counts(app: &TestApp, ws: &str) -> (i64, i64, i64) {
    let r = app.gql(COUNTS, json!({ "id": ws })).await;
    let w = &r.data()["workspace"];
    (
        w["spaceCount"].as_i64().unwrap(),
        w["memoryCount"].as_i64().unwrap(),
        w["usedStorage"].as_i64().unwrap(),
    )
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// "OK" for a response without errors, else its single error code.
fn outcome(r: &GqlResponse) -> String {
    if r.codes().is_empty() {
        "OK".to_string()
    } else {
        r.code()
    }
}

/// Collects wrong outcomes so one run shows every wrong case, not just the first.
#[derive(Default)]
struct Expectations(Vec<String>);

impl Expectations {
    fn check(&mut self, case: &str, want: &str, r: &GqlResponse) {
        let got = outcome(r);
        if got != want {
            self.0
                .push(format!("{case}: expected {want}, got {got}: {}", r.body));
        }
    }

    fn assert_all_met(self) {
        assert!(
            self.0.is_empty(),
            "{} case(s) wrong:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

/// A user of the default org added to `ws` with `role` by `key`; returns (id, key).
async fn member(app: &TestApp, key: &str, ws: &str, name: &str, role: &str) -> (String, String) {
    let user = app.user(name, false).await;
    app.add_workspace_member_as(key, ws, &user.0, role)
        .await
        .data();
    user
}

/// A workspace created by a plain user (its OWNER) with an ADMIN, an EDITOR and a VIEWER, plus a
/// user of the same organization who is not a member. Each person is (user id, API key).
struct Team {
    id: String,
    owner: (String, String),
    admin: (String, String),
    editor: (String, String),
    viewer: (String, String),
    outsider: (String, String),
}

async fn team(app: &TestApp, name: &str) -> Team {
    let owner = app.user("owner", false).await;
    let id = app.workspace_as(&owner.1, name).await;
    Team {
        admin: member(app, &owner.1, &id, "admin", "ADMIN").await,
        editor: member(app, &owner.1, &id, "editor", "EDITOR").await,
        viewer: member(app, &owner.1, &id, "viewer", "VIEWER").await,
        outsider: app.user("outsider", false).await,
        owner,
        id,
    }
}

// ---- Create, update, delete --------------------------------------------------------------------

#[tokio::test]
async fn creating_a_workspace_trims_its_name_applies_the_defaults_and_makes_the_creator_owner() {
    let app = TestApp::spawn().await;
    let (user_id, key) = app.user("creator", false).await;
    let org = app.org_id_of(&key).await;

    let r = create(&app, &key, json!({ "name": "  Research  " })).await;

    let ws = &r.data()["createWorkspace"];
    assert_eq!(ws["name"], "Research");
    assert_eq!(ws["description"], "");
    assert_eq!(ws["workspaceType"], "CUSTOM");
    assert_eq!(ws["documentUploadMethod"], "MANUAL");
    assert_eq!(ws["organization"]["id"], json!(org));
    assert_eq!(
        [&ws["spaceCount"], &ws["memoryCount"], &ws["usedStorage"]],
        [0, 0, 0]
    );
    assert_eq!(time(&ws["createdAt"]), time(&ws["updatedAt"]));
    let id = ws["id"].as_str().unwrap();
    assert_eq!(member_roles(&app, id).await, roles(&[(&user_id, "OWNER")]));
    let read = get(&app, &key, id).await;
    let read = &read.data()["workspace"];
    assert_eq!(read["viewerRole"], "OWNER");
    for field in [
        "name",
        "description",
        "createdAt",
        "updatedAt",
        "documentUploadMethod",
    ] {
        assert_eq!(read[field], ws[field], "{field}");
    }
    // The creator is its OWNER already in the answer to createWorkspace.
    assert_eq!(ws["viewerRole"], "OWNER", "{}", r.body);
}

#[tokio::test]
async fn creating_a_workspace_keeps_the_given_description_type_and_upload_method() {
    let app = TestApp::spawn().await;
    let (_, key) = app.user("creator", false).await;

    let r = create(
        &app,
        &key,
        json!({ "name": "Docs", "description": "Team documents", "workspaceType": "CUSTOM",
                "documentUploadMethod": "SYNCED" }),
    )
    .await;

    let ws = &r.data()["createWorkspace"];
    assert_eq!(ws["description"], "Team documents");
    assert_eq!(ws["workspaceType"], "CUSTOM");
    assert_eq!(ws["documentUploadMethod"], "SYNCED");
    let read = get(&app, &key, ws["id"].as_str().unwrap()).await;
    assert_eq!(read.data()["workspace"]["documentUploadMethod"], "SYNCED");
}

#[tokio::test]
async fn workspace_names_and_descriptions_out_of_bounds_are_validation_errors() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let cases = [
        (json!({ "name": "" }), "name"),
        (json!({ "name": "   " }), "name"),
        (json!({ "name": "x".repeat(101) }), "name"),
        (
            json!({ "name": "long description", "description": "d".repeat(2001) }),
            "description",
        ),
    ];

    for (input, field) in &cases {
        let r = create(&app, &key, input.clone()).await;
        assert_eq!(r.code(), "VALIDATION_ERROR", "{input}: {}", r.body);
        assert_eq!(r.field(), *field, "{input}");
    }
    let total = list(&app, &key, json!({})).await;
    assert_eq!(total.data()["workspaces"]["totalCount"], 0);
}

#[tokio::test]
async fn workspace_names_and_descriptions_at_their_limits_are_accepted() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let hundred_chars = "é".repeat(100); // 200 bytes: the limit is in characters
    let padded = format!("  {}  ", "y".repeat(100));

    let multibyte = create(&app, &key, json!({ "name": hundred_chars })).await;
    let trimmed = create(&app, &key, json!({ "name": padded })).await;
    let one = create(
        &app,
        &key,
        json!({ "name": "z", "description": "d".repeat(2000) }),
    )
    .await;

    assert_eq!(multibyte.data()["createWorkspace"]["name"], hundred_chars);
    assert_eq!(trimmed.data()["createWorkspace"]["name"], "y".repeat(100));
    assert_eq!(
        one.data()["createWorkspace"]["description"]
            .as_str()
            .unwrap()
            .len(),
        2000
    );
}

#[tokio::test]
async fn updating_a_workspace_applies_the_same_validation_and_changes_nothing_on_failure() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let id = app.workspace_as(&key, "Stable").await;
    let cases = [
        (json!({ "name": "" }), "name"),
        (json!({ "name": "  " }), "name"),
        (json!({ "name": "x".repeat(101) }), "name"),
        (json!({ "description": "d".repeat(2001) }), "description"),
        (
            json!({ "name": "Fine", "description": "d".repeat(2001) }),
            "description",
        ),
    ];

    for (input, field) in &cases {
        let r = update(&app, &key, &id, input.clone()).await;
        assert_eq!(r.code(), "VALIDATION_ERROR", "{input}: {}", r.body);
        assert_eq!(r.field(), *field, "{input}");
    }
    let ws = get(&app, &key, &id).await;
    assert_eq!(ws.data()["workspace"]["name"], "Stable");
    assert_eq!(ws.data()["workspace"]["description"], "");
}

#[tokio::test]
async fn updating_a_workspace_changes_only_the_given_fields() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let created = create(
        &app,
        &key,
        json!({ "name": "Before", "description": "kept", "documentUploadMethod": "SYNCED" }),
    )
    .await;
    let created = created.data()["createWorkspace"].clone();
    let id = created["id"].as_str().unwrap();

    let renamed = update(&app, &key, id, json!({ "name": "  After " })).await;
    let manual = update(&app, &key, id, json!({ "documentUploadMethod": "MANUAL" })).await;

    let renamed = &renamed.data()["updateWorkspace"];
    assert_eq!(renamed["name"], "After");
    assert_eq!(renamed["description"], "kept");
    assert_eq!(renamed["documentUploadMethod"], "SYNCED");
    assert_eq!(renamed["createdAt"], created["createdAt"]);
    assert!(time(&renamed["updatedAt"]) > time(&created["updatedAt"]));
    let manual = &manual.data()["updateWorkspace"];
    assert_eq!(manual["name"], "After");
    assert_eq!(manual["description"], "kept");
    assert_eq!(manual["documentUploadMethod"], "MANUAL");
    assert_eq!(get(&app, &key, id).await.data()["workspace"], *manual);
}

#[tokio::test]
async fn only_workspace_admins_owners_and_org_admins_may_update_a_workspace() {
    let app = TestApp::spawn().await;
    let t = team(&app, "Team").await;
    let (_, org_admin) = app.user("org-admin", true).await;
    let other_admin = app.other_org("other").await;
    let (_, other_user) = app.user_in(&other_admin, "foreigner", false).await;
    let mut e = Expectations::default();

    for (who, key, want) in [
        ("VIEWER", &t.viewer.1, "FORBIDDEN"),
        ("EDITOR", &t.editor.1, "FORBIDDEN"),
        ("non-member", &t.outsider.1, "NOT_FOUND"),
        ("other org's admin", &other_admin, "NOT_FOUND"),
        ("other org's user", &other_user, "NOT_FOUND"),
        ("ADMIN", &t.admin.1, "OK"),
        ("OWNER", &t.owner.1, "OK"),
        ("org admin (not a member)", &org_admin, "OK"),
    ] {
        let r = update(
            &app,
            key,
            &t.id,
            json!({ "description": format!("by {who}") }),
        )
        .await;
        e.check(who, want, &r);
    }

    e.assert_all_met();
    let ws = get(&app, &t.owner.1, &t.id).await;
    assert_eq!(
        ws.data()["workspace"]["description"],
        "by org admin (not a member)"
    );
}

#[tokio::test]
async fn a_workspace_name_is_unique_in_its_organization_but_not_across_organizations() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.user("alice", false).await;
    let (_, bob) = app.user("bob", false).await;
    let other_admin = app.other_org("other").await;
    app.workspace_as(&alice, "Research").await;
    let other = app.workspace_as(&alice, "Other").await;

    let again = create(&app, &alice, json!({ "name": "Research" })).await;
    let padded = create(&app, &alice, json!({ "name": "  Research " })).await;
    let by_colleague = create(&app, &bob, json!({ "name": "Research" })).await;
    let other_org = create(&app, &other_admin, json!({ "name": "Research" })).await;
    let rename = update(&app, &alice, &other, json!({ "name": "Research" })).await;
    let rename_to_itself = update(&app, &alice, &other, json!({ "name": "Other" })).await;

    assert_eq!(again.code(), "ALREADY_EXISTS");
    assert_eq!(padded.code(), "ALREADY_EXISTS");
    assert_eq!(by_colleague.code(), "ALREADY_EXISTS");
    assert_eq!(other_org.data()["createWorkspace"]["name"], "Research");
    assert_eq!(rename.code(), "ALREADY_EXISTS");
    assert_eq!(rename_to_itself.data()["updateWorkspace"]["name"], "Other");
    let all = list(&app, &app.admin_key, json!({})).await;
    assert_eq!(all.data()["workspaces"]["totalCount"], 2);
}

#[tokio::test]
async fn twenty_concurrent_creates_of_one_name_make_exactly_one_workspace() {
    let app = TestApp::spawn().await;
    let (_, key) = app.user("racer", false).await;

    let results =
        join_all((0..20).map(|_| create(&app, &key, json!({ "name": "Contended" })))).await;

    let outcomes: Vec<String> = results.iter().map(outcome).collect();
    let wins = outcomes.iter().filter(|o| *o == "OK").count();
    let losses = outcomes.iter().filter(|o| *o == "ALREADY_EXISTS").count();
    assert_eq!((wins, losses), (1, 19), "{outcomes:?}");
    let found = list(&app, &key, json!({ "filter": { "nameGlob": "Contended" } })).await;
    assert_eq!(found.data()["workspaces"]["totalCount"], 1);
}

#[tokio::test]
async fn agents_and_space_tokens_cannot_create_workspaces() {
    let app = TestApp::spawn().await;
    let (_, agent_key) = app.agent("bot").await;
    let space = app.space_as(&app.admin_key, "tokened", json!({})).await;
    let (_, token) = app
        .space_token_as(&app.admin_key, &space, "EDIT", None)
        .await;

    let by_agent = create(&app, &agent_key, json!({ "name": "Agents" })).await;
    let by_token = create(&app, &token, json!({ "name": "Tokens" })).await;

    assert_eq!(by_agent.code(), "FORBIDDEN");
    assert_eq!(by_token.code(), "FORBIDDEN");
    let all = list(&app, &app.admin_key, json!({})).await;
    assert_eq!(all.data()["workspaces"]["totalCount"], 0);
}

#[tokio::test]
async fn only_workspace_owners_and_org_admins_may_delete_a_workspace() {
    let app = TestApp::spawn().await;
    let t = team(&app, "Doomed").await;
    let (_, org_admin) = app.user("org-admin", true).await;
    let other_admin = app.other_org("other").await;
    let second = app.workspace_as(&t.owner.1, "Also doomed").await;
    let mut e = Expectations::default();

    for (who, key, want) in [
        ("ADMIN", &t.admin.1, "FORBIDDEN"),
        ("EDITOR", &t.editor.1, "FORBIDDEN"),
        ("VIEWER", &t.viewer.1, "FORBIDDEN"),
        ("non-member", &t.outsider.1, "NOT_FOUND"),
        ("other org's admin", &other_admin, "NOT_FOUND"),
    ] {
        e.check(who, want, &delete(&app, key, &t.id, None).await);
    }
    let by_owner = delete(&app, &t.owner.1, &t.id, None).await;
    let by_org_admin = delete(&app, &org_admin, &second, None).await;

    e.assert_all_met();
    assert_eq!(by_owner.data()["deleteWorkspace"], json!(t.id));
    assert_eq!(by_org_admin.data()["deleteWorkspace"], json!(second));
    assert_eq!(get(&app, &t.owner.1, &t.id).await.code(), "NOT_FOUND");
    assert_eq!(get(&app, &t.viewer.1, &t.id).await.code(), "NOT_FOUND");
    assert_eq!(
        delete(&app, &t.owner.1, &t.id, None).await.code(),
        "NOT_FOUND"
    );
    let left = list(&app, &app.admin_key, json!({})).await;
    assert_eq!(left.data()["workspaces"]["totalCount"], 0);
}

#[tokio::test]
async fn deleting_a_workspace_with_live_spaces_without_force_is_a_validation_error_on_force() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let ws = app.workspace_as(&key, "Busy").await;
    let s = app
        .space_as(&key, "inside", json!({ "workspaceId": ws }))
        .await;

    let implicit = delete(&app, &key, &ws, None).await;
    let explicit = delete(&app, &key, &ws, Some(false)).await;

    for r in [&implicit, &explicit] {
        assert_eq!(r.code(), "VALIDATION_ERROR", "{}", r.body);
        assert_eq!(r.field(), "force");
    }
    assert_eq!(counts(&app, &ws).await.0, 1);
    let inside = space(&app, &key, &s).await;
    assert_eq!(inside.data()["space"]["deletedAt"], Value::Null);
    assert_eq!(inside.data()["space"]["workspace"]["id"], json!(ws));
}

#[tokio::test]
async fn force_deleting_a_workspace_soft_deletes_its_spaces() {
    let app = TestApp::spawn().await;
    let t = team(&app, "Forced").await;
    let owner = t.owner.1.clone();
    let a = app
        .space_as(&owner, "ws-a", json!({ "workspaceId": t.id }))
        .await;
    let b = app
        .space_as(&owner, "ws-b", json!({ "workspaceId": t.id }))
        .await;
    let outside = app.space_as(&owner, "outside", json!({})).await;

    let r = delete(&app, &owner, &t.id, Some(true)).await;

    assert_eq!(r.data()["deleteWorkspace"], json!(t.id));
    assert_eq!(get(&app, &owner, &t.id).await.code(), "NOT_FOUND");
    let (live, live_total) = space_ids(&app, &owner, json!({ "name": "ws-*" })).await;
    assert_eq!((live, live_total), (vec![], 0));
    let all = app
        .gql_as(
            Some(&owner),
            SPACES,
            json!({ "f": { "name": "ws-*", "includeDeleted": true } }),
        )
        .await;
    let conn = &all.data()["spaces"];
    assert_eq!(conn["totalCount"], 2);
    for edge in conn["edges"].as_array().unwrap() {
        assert!(edge["node"]["deletedAt"].is_string(), "{edge}");
        assert!([&a, &b].contains(&&edge["node"]["id"].as_str().unwrap().to_string()));
    }
    assert!(space(&app, &owner, &a).await.data()["space"]["deletedAt"].is_string());
    assert!(space(&app, &owner, &outside).await.data()["space"]["deletedAt"].is_null());
    // The workspace's members lose the spaces with it.
    assert_eq!(space(&app, &t.editor.1, &a).await.code(), "NOT_FOUND");
}

#[tokio::test]
async fn a_workspace_whose_spaces_are_all_deleted_is_deleted_without_force() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let ws = app.workspace_as(&key, "Emptied").await;
    let s = app
        .space_as(&key, "gone", json!({ "workspaceId": ws }))
        .await;
    app.gql_as(
        Some(&key),
        "mutation($id:ID!){ deleteSpace(id:$id){ id } }",
        json!({ "id": s }),
    )
    .await
    .data();

    let r = delete(&app, &key, &ws, None).await;

    assert_eq!(r.data()["deleteWorkspace"], json!(ws));
}

// ---- Members -----------------------------------------------------------------------------------

#[tokio::test]
async fn workspace_admins_add_members_who_are_listed_with_their_roles_in_join_order() {
    let app = TestApp::spawn().await;
    let (owner_id, owner_key) = app.user("owner", false).await;
    let ws = app.workspace_as(&owner_key, "Crew").await;
    let (admin_id, admin_key) = app.user("admin", false).await;
    let (editor_id, editor_key) = app.user("editor", false).await;
    let (viewer_id, viewer_key) = app.user("viewer", false).await;

    let added_admin = app
        .add_workspace_member_as(&owner_key, &ws, &admin_id, "ADMIN")
        .await;
    let added_editor = app
        .add_workspace_member_as(&admin_key, &ws, &editor_id, "EDITOR")
        .await;
    let added_viewer = app
        .add_workspace_member_as(&admin_key, &ws, &viewer_id, "VIEWER")
        .await;

    assert_eq!(
        added_admin.data()["addWorkspaceMember"],
        json!({ "role": "ADMIN", "user": { "id": admin_id } })
    );
    added_editor.data();
    added_viewer.data();
    assert_eq!(
        member_roles(&app, &ws).await,
        roles(&[
            (&owner_id, "OWNER"),
            (&admin_id, "ADMIN"),
            (&editor_id, "EDITOR"),
            (&viewer_id, "VIEWER"),
        ])
    );
    for (key, role) in [(&editor_key, "EDITOR"), (&viewer_key, "VIEWER")] {
        let r = get(&app, key, &ws).await;
        assert_eq!(r.data()["workspace"]["viewerRole"], role);
    }
    let first = app
        .gql_as(Some(&viewer_key), MEMBERS, json!({ "id": ws, "first": 3 }))
        .await;
    let conn = &first.data()["workspace"]["members"];
    assert_eq!(conn["totalCount"], 4);
    assert_eq!(conn["pageInfo"]["hasNextPage"], true);
    let rest = app
        .gql_as(
            Some(&viewer_key),
            MEMBERS,
            json!({ "id": ws, "first": 3, "after": conn["pageInfo"]["endCursor"] }),
        )
        .await;
    let rest = &rest.data()["workspace"]["members"];
    assert_eq!(
        rest["edges"],
        json!([{ "node": { "role": "VIEWER", "user": { "id": viewer_id } } }])
    );
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn adding_an_existing_member_again_is_already_exists() {
    let app = TestApp::spawn().await;
    let t = team(&app, "Crew").await;

    let same_role = app
        .add_workspace_member_as(&t.owner.1, &t.id, &t.viewer.0, "VIEWER")
        .await;
    let other_role = app
        .add_workspace_member_as(&t.owner.1, &t.id, &t.viewer.0, "EDITOR")
        .await;
    let the_creator = app
        .add_workspace_member_as(&t.admin.1, &t.id, &t.owner.0, "VIEWER")
        .await;

    assert_eq!(same_role.code(), "ALREADY_EXISTS");
    assert_eq!(other_role.code(), "ALREADY_EXISTS");
    assert_eq!(the_creator.code(), "ALREADY_EXISTS");
    assert_eq!(
        member_roles(&app, &t.id).await,
        roles(&[
            (&t.owner.0, "OWNER"),
            (&t.admin.0, "ADMIN"),
            (&t.editor.0, "EDITOR"),
            (&t.viewer.0, "VIEWER"),
        ])
    );
}

#[tokio::test]
async fn adding_a_user_of_another_organization_or_an_unknown_user_is_a_validation_error() {
    let app = TestApp::spawn().await;
    let (owner_id, owner_key) = app.user("owner", false).await;
    let ws = app.workspace_as(&owner_key, "Closed").await;
    let other_admin = app.other_org("other").await;
    let (foreigner, _) = app.user_in(&other_admin, "foreigner", false).await;
    let unknown = uuid::Uuid::now_v7().to_string();

    for user in [foreigner.as_str(), unknown.as_str(), "not-an-id"] {
        let r = app
            .add_workspace_member_as(&owner_key, &ws, user, "VIEWER")
            .await;
        assert_eq!(r.code(), "VALIDATION_ERROR", "{user}: {}", r.body);
        assert_eq!(r.field(), "userId", "{user}");
    }
    assert_eq!(
        member_roles(&app, &ws).await,
        roles(&[(&owner_id, "OWNER")])
    );
}

#[tokio::test]
async fn viewers_editors_and_outsiders_cannot_manage_members() {
    let app = TestApp::spawn().await;
    let t = team(&app, "Crew").await;
    let (newcomer, _) = app.user("newcomer", false).await;
    let other_admin = app.other_org("other").await;
    let mut e = Expectations::default();

    for (who, key, want) in [
        ("VIEWER", &t.viewer.1, "FORBIDDEN"),
        ("EDITOR", &t.editor.1, "FORBIDDEN"),
        ("non-member", &t.outsider.1, "NOT_FOUND"),
        ("other org's admin", &other_admin, "NOT_FOUND"),
    ] {
        let add = app
            .add_workspace_member_as(key, &t.id, &newcomer, "VIEWER")
            .await;
        e.check(&format!("{who} adds"), want, &add);
        let change = update_member(&app, key, &t.id, &t.viewer.0, "EDITOR").await;
        e.check(&format!("{who} changes a role"), want, &change);
        let remove = remove_member(&app, key, &t.id, &t.viewer.0).await;
        e.check(&format!("{who} removes"), want, &remove);
    }

    e.assert_all_met();
    assert_eq!(member_roles(&app, &t.id).await.len(), 4);
}

#[tokio::test]
async fn a_workspace_admin_manages_the_other_roles_but_cannot_grant_change_or_remove_owner() {
    let app = TestApp::spawn().await;
    let t = team(&app, "Crew").await;
    let (newcomer, _) = app.user("newcomer", false).await;
    let admin = t.admin.1.clone();
    let mut e = Expectations::default();

    e.check(
        "add as OWNER",
        "FORBIDDEN",
        &app.add_workspace_member_as(&admin, &t.id, &newcomer, "OWNER")
            .await,
    );
    e.check(
        "promote an EDITOR to OWNER",
        "FORBIDDEN",
        &update_member(&app, &admin, &t.id, &t.editor.0, "OWNER").await,
    );
    e.check(
        "promote oneself to OWNER",
        "FORBIDDEN",
        &update_member(&app, &admin, &t.id, &t.admin.0, "OWNER").await,
    );
    e.check(
        "demote the OWNER",
        "FORBIDDEN",
        &update_member(&app, &admin, &t.id, &t.owner.0, "VIEWER").await,
    );
    e.check(
        "remove the OWNER",
        "FORBIDDEN",
        &remove_member(&app, &admin, &t.id, &t.owner.0).await,
    );
    e.check(
        "add as ADMIN",
        "OK",
        &app.add_workspace_member_as(&admin, &t.id, &newcomer, "ADMIN")
            .await,
    );
    e.check(
        "demote an EDITOR to VIEWER",
        "OK",
        &update_member(&app, &admin, &t.id, &t.editor.0, "VIEWER").await,
    );
    e.check(
        "remove a VIEWER",
        "OK",
        &remove_member(&app, &admin, &t.id, &t.viewer.0).await,
    );

    e.assert_all_met();
    assert_eq!(
        member_roles(&app, &t.id).await,
        roles(&[
            (&t.owner.0, "OWNER"),
            (&t.admin.0, "ADMIN"),
            (&t.editor.0, "VIEWER"),
            (&newcomer, "ADMIN"),
        ])
    );
}

#[tokio::test]
async fn a_workspace_owner_or_an_org_admin_may_grant_and_take_back_the_owner_role() {
    let app = TestApp::spawn().await;
    let t = team(&app, "Crew").await;
    let (org_admin_id, org_admin) = app.user("org-admin", true).await;

    let promoted = update_member(&app, &t.owner.1, &t.id, &t.admin.0, "OWNER").await;
    let by_org_admin = update_member(&app, &org_admin, &t.id, &t.editor.0, "OWNER").await;
    let added_by_org_admin = app
        .add_workspace_member_as(&org_admin, &t.id, &org_admin_id, "OWNER")
        .await;
    let demoted = update_member(&app, &t.admin.1, &t.id, &t.owner.0, "EDITOR").await;
    let removed = remove_member(&app, &org_admin, &t.id, &t.editor.0).await;

    assert_eq!(promoted.data()["updateWorkspaceMember"]["role"], "OWNER");
    assert_eq!(
        by_org_admin.data()["updateWorkspaceMember"]["role"],
        "OWNER"
    );
    assert_eq!(
        added_by_org_admin.data()["addWorkspaceMember"]["role"],
        "OWNER"
    );
    assert_eq!(demoted.data()["updateWorkspaceMember"]["role"], "EDITOR");
    assert_eq!(removed.data()["removeWorkspaceMember"], json!(t.editor.0));
    assert_eq!(
        member_roles(&app, &t.id).await,
        roles(&[
            (&t.owner.0, "EDITOR"),
            (&t.admin.0, "OWNER"),
            (&t.viewer.0, "VIEWER"),
            (&org_admin_id, "OWNER"),
        ])
    );
}

#[tokio::test]
async fn the_last_owner_of_a_workspace_can_be_neither_removed_nor_demoted() {
    let app = TestApp::spawn().await;
    let (owner_id, owner_key) = app.user("owner", false).await;
    let (next_id, next_key) = app.user("next", false).await;
    let ws = app.workspace_as(&owner_key, "Held").await;
    let org_admin = app.admin_key.clone();
    let mut e = Expectations::default();

    for (who, key) in [("the owner", &owner_key), ("an org admin", &org_admin)] {
        for role in ["ADMIN", "EDITOR", "VIEWER"] {
            let r = update_member(&app, key, &ws, &owner_id, role).await;
            e.check(&format!("{who} demotes to {role}"), "VALIDATION_ERROR", &r);
        }
        let r = remove_member(&app, key, &ws, &owner_id).await;
        e.check(&format!("{who} removes"), "VALIDATION_ERROR", &r);
    }
    // With a second OWNER the first may step down; then the second is the last one.
    app.add_workspace_member_as(&owner_key, &ws, &next_id, "OWNER")
        .await
        .data();
    e.check(
        "one of two owners steps down",
        "OK",
        &update_member(&app, &owner_key, &ws, &owner_id, "VIEWER").await,
    );
    e.check(
        "the new last owner removes itself",
        "VALIDATION_ERROR",
        &remove_member(&app, &next_key, &ws, &next_id).await,
    );
    e.check(
        "the new last owner demotes itself",
        "VALIDATION_ERROR",
        &update_member(&app, &next_key, &ws, &next_id, "ADMIN").await,
    );

    e.assert_all_met();
    assert_eq!(
        member_roles(&app, &ws).await,
        roles(&[(&owner_id, "VIEWER"), (&next_id, "OWNER")])
    );
}

#[tokio::test]
async fn two_owners_demoting_each_other_at_once_leave_the_workspace_an_owner() {
    let app = TestApp::spawn().await;
    for round in 0..10 {
        let (a_id, a_key) = app.user("a", false).await;
        let (b_id, b_key) = app.user("b", false).await;
        let ws = app.workspace_as(&a_key, &format!("pair-{round}")).await;
        app.add_workspace_member_as(&a_key, &ws, &b_id, "OWNER")
            .await
            .data();

        let (ra, rb) = tokio::join!(
            update_member(&app, &a_key, &ws, &b_id, "VIEWER"),
            update_member(&app, &b_key, &ws, &a_id, "VIEWER"),
        );

        let members = member_roles(&app, &ws).await;
        let owners = members.iter().filter(|(_, r)| r == "OWNER").count();
        assert!(
            owners >= 1,
            "round {round}: no OWNER left ({members:?}); responses {} / {}",
            ra.body,
            rb.body
        );
        for r in [&ra, &rb] {
            let o = outcome(r);
            // The loser either finds itself the last owner or already demoted (FORBIDDEN).
            assert!(
                ["OK", "VALIDATION_ERROR", "FORBIDDEN"].contains(&o.as_str()),
                "round {round}: {}",
                r.body
            );
        }
    }
}

#[tokio::test]
async fn changing_or_removing_a_user_who_is_not_a_member_is_not_found() {
    let app = TestApp::spawn().await;
    let t = team(&app, "Crew").await;

    let change = update_member(&app, &t.owner.1, &t.id, &t.outsider.0, "EDITOR").await;
    let remove = remove_member(&app, &t.owner.1, &t.id, &t.outsider.0).await;

    assert_eq!(change.code(), "NOT_FOUND");
    assert_eq!(remove.code(), "NOT_FOUND");
}

#[tokio::test]
async fn membership_changes_apply_from_the_very_next_request() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner", false).await;
    let (user_id, user) = app.user("joiner", false).await;
    let ws = app.workspace_as(&owner, "Live").await;
    let s = app
        .space_as(
            &owner,
            "private",
            json!({ "workspaceId": ws, "accessMode": "PRIVATE" }),
        )
        .await;
    let permission = |r: GqlResponse| {
        if r.codes().is_empty() {
            r.body["data"]["space"]["viewerPermission"]
                .as_str()
                .unwrap()
                .to_string()
        } else {
            r.code()
        }
    };

    let before = permission(space(&app, &user, &s).await);
    app.add_workspace_member_as(&owner, &ws, &user_id, "VIEWER")
        .await
        .data();
    let as_viewer = permission(space(&app, &user, &s).await);
    let viewer_write = app
        .create_memory_as(&user, &s, "viewer note", json!({}))
        .await;
    update_member(&app, &owner, &ws, &user_id, "EDITOR")
        .await
        .data();
    let as_editor = permission(space(&app, &user, &s).await);
    let editor_write = app
        .create_memory_as(&user, &s, "editor note", json!({}))
        .await;
    remove_member(&app, &owner, &ws, &user_id).await.data();
    let after = permission(space(&app, &user, &s).await);
    let workspace_after = get(&app, &user, &ws).await;
    let list_after = list(&app, &user, json!({})).await;

    assert_eq!(before, "NOT_FOUND");
    assert_eq!(as_viewer, "VIEW");
    assert_eq!(viewer_write.code(), "FORBIDDEN");
    assert_eq!(as_editor, "EDIT");
    editor_write.data();
    assert_eq!(after, "NOT_FOUND");
    assert_eq!(workspace_after.code(), "NOT_FOUND");
    assert_eq!(list_after.data()["workspaces"]["totalCount"], 0);
}

// ---- Visibility --------------------------------------------------------------------------------

#[tokio::test]
async fn workspaces_are_visible_to_their_members_and_their_org_admins_only() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner", false).await;
    let a = app.workspace_as(&owner, "A").await;
    let b = app.workspace_as(&owner, "B").await;
    let (_, viewer) = member(&app, &owner, &a, "viewer", "VIEWER").await;
    let (_, outsider) = app.user("outsider", false).await;
    let (_, agent) = app.agent("bot").await;
    let org_admin = app.admin_key.clone();
    let other_admin = app.other_org("other").await;
    let (_, other_user) = app.user_in(&other_admin, "foreigner", false).await;
    let c = app.workspace_as(&other_admin, "C").await;
    let s = app
        .space_as(&owner, "in-a", json!({ "workspaceId": a }))
        .await;
    let (_, token) = app.space_token_as(&owner, &s, "EDIT", None).await;
    let mut e = Expectations::default();

    // (who, key, workspace(A) outcome, its viewerRole, the ids `workspaces` lists)
    #[rustfmt::skip]
    let cases: [(&str, &str, &str, Value, Vec<&str>); 8] = [
        ("owner",                    &owner,       "OK",        json!("OWNER"),  vec![&a, &b]),
        ("VIEWER of A",              &viewer,      "OK",        json!("VIEWER"), vec![&a]),
        ("org admin (not a member)", &org_admin,   "OK",        Value::Null,     vec![&a, &b]),
        ("non-member",               &outsider,    "NOT_FOUND", Value::Null,     vec![]),
        ("agent",                    &agent,       "NOT_FOUND", Value::Null,     vec![]),
        ("space token",              &token,       "NOT_FOUND", Value::Null,     vec![]),
        ("other org's admin",        &other_admin, "NOT_FOUND", Value::Null,     vec![&c]),
        ("other org's user",         &other_user,  "NOT_FOUND", Value::Null,     vec![]),
    ];
    for (who, key, want, role, ids) in cases {
        let one = get(&app, key, &a).await;
        e.check(&format!("{who}: workspace(A)"), want, &one);
        if want == "OK"
            && one.codes().is_empty()
            && one.body["data"]["workspace"]["viewerRole"] != role
        {
            e.0.push(format!(
                "{who}: viewerRole expected {role}, got {}",
                one.body
            ));
        }
        let page = list(&app, key, json!({})).await;
        let got = listed(&page);
        let total = page.body["data"]["workspaces"]["totalCount"].clone();
        if got != ids || total != json!(ids.len()) {
            e.0.push(format!(
                "{who}: workspaces expected {ids:?}, got {got:?} with totalCount {total}"
            ));
        }
    }

    e.assert_all_met();
    assert_eq!(get(&app, &owner, "not-an-id").await.code(), "NOT_FOUND");
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(get(&app, &org_admin, &unknown).await.code(), "NOT_FOUND");
}

#[tokio::test]
async fn workspaces_page_oldest_first_with_cursors_and_filter_by_name_glob() {
    let app = TestApp::spawn().await;
    let (_, key) = app.user("owner", false).await;
    for name in ["Team-1", "Team-2", "Team-3", "Team-4", "Team-5", "Other"] {
        app.workspace_as(&key, name).await;
    }

    let first = list(&app, &key, json!({ "first": 4 })).await;
    let after = first.data()["workspaces"]["pageInfo"]["endCursor"].clone();
    let second = list(&app, &key, json!({ "first": 4, "after": after })).await;
    let glob = list(&app, &key, json!({ "filter": { "nameGlob": "Team-?" } })).await;
    let suffix = list(&app, &key, json!({ "filter": { "nameGlob": "*-3" } })).await;
    let none = list(&app, &key, json!({ "filter": { "nameGlob": "team-*" } })).await;
    let bad_cursor = list(&app, &key, json!({ "after": "garbage" })).await;
    let clamped = list(&app, &key, json!({ "first": 5000 })).await;

    assert_eq!(
        listed_names(&first),
        ["Team-1", "Team-2", "Team-3", "Team-4"]
    );
    let page = &first.data()["workspaces"];
    assert_eq!(page["totalCount"], 6);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(listed_names(&second), ["Team-5", "Other"]);
    assert_eq!(
        second.data()["workspaces"]["pageInfo"]["hasNextPage"],
        false
    );
    assert_eq!(listed_names(&glob).len(), 5);
    assert_eq!(glob.data()["workspaces"]["totalCount"], 5);
    assert_eq!(listed_names(&suffix), ["Team-3"]);
    assert_eq!(none.data()["workspaces"]["totalCount"], 0);
    assert_eq!(bad_cursor.code(), "INVALID_ARGUMENT");
    assert_eq!(listed_names(&clamped).len(), 6);
}

// ---- Spaces in workspaces ----------------------------------------------------------------------

#[tokio::test]
async fn creating_a_space_in_a_workspace_needs_editor_or_more_there() {
    let app = TestApp::spawn().await;
    let t = team(&app, "Builders").await;
    let other_admin = app.other_org("other").await;
    let foreign = app.workspace_as(&other_admin, "Foreign").await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let mut e = Expectations::default();

    for (who, key, ws, want) in [
        ("OWNER", &t.owner.1, &t.id, "OK"),
        ("ADMIN", &t.admin.1, &t.id, "OK"),
        ("EDITOR", &t.editor.1, &t.id, "OK"),
        ("org admin (not a member)", &app.admin_key, &t.id, "OK"),
        ("non-member", &t.outsider.1, &t.id, "VALIDATION_ERROR"),
        (
            "unknown workspace",
            &t.owner.1,
            &unknown,
            "VALIDATION_ERROR",
        ),
        (
            "another org's workspace",
            &t.owner.1,
            &foreign,
            "VALIDATION_ERROR",
        ),
    ] {
        let r = app
            .create_space_as(
                key,
                json!({ "name": format!("by {who}"), "workspaceId": ws }),
            )
            .await;
        e.check(who, want, &r);
        if want == "VALIDATION_ERROR" && outcome(&r) == want && r.field() != "workspaceId" {
            e.0.push(format!("{who}: error names field {}", r.field()));
        }
    }

    e.assert_all_met();
    let (ids, total) = space_ids(&app, &t.owner.1, json!({ "workspaceId": t.id })).await;
    assert_eq!((ids.len(), total), (4, 4));
    assert_eq!(counts(&app, &t.id).await.0, 4);
}

#[tokio::test]
async fn a_workspace_viewer_creating_a_space_in_it_is_forbidden() {
    // The viewer can see the workspace but lacks the role: FORBIDDEN (as for any visible
    // resource without the permission); a workspace the caller cannot see is a bad reference
    // in the input: VALIDATION_ERROR on workspaceId.
    let app = TestApp::spawn().await;
    let t = team(&app, "Builders").await;

    let r = app
        .create_space_as(&t.viewer.1, json!({ "name": "nope", "workspaceId": t.id }))
        .await;

    assert_eq!(r.code(), "FORBIDDEN", "{}", r.body);
    let (ids, total) = space_ids(&app, &t.owner.1, json!({ "workspaceId": t.id })).await;
    assert_eq!((ids.len(), total), (0, 0));
}

#[tokio::test]
async fn workspace_viewers_read_its_spaces_and_editors_also_write_memories() {
    let app = TestApp::spawn().await;
    let t = team(&app, "Writers").await;
    let s = app
        .space_as(&t.owner.1, "private", json!({ "workspaceId": t.id }))
        .await;

    let viewer_write = app
        .create_memory_as(&t.viewer.1, &s, "from the viewer", json!({}))
        .await;
    let editor_write = app
        .create_memory_as(&t.editor.1, &s, "from the editor", json!({}))
        .await;
    let outsider_write = app
        .create_memory_as(&t.outsider.1, &s, "from outside", json!({}))
        .await;
    let viewer_reads = app
        .gql_as(
            Some(&t.viewer.1),
            "query($id:ID!){ space(id:$id){ memories{ totalCount } } }",
            json!({ "id": s }),
        )
        .await;

    assert_eq!(viewer_write.code(), "FORBIDDEN");
    editor_write.data();
    assert_eq!(outsider_write.code(), "NOT_FOUND");
    assert_eq!(viewer_reads.data()["space"]["memories"]["totalCount"], 1);
}

#[tokio::test]
async fn a_workspaces_spaces_field_lists_only_its_own_visible_spaces() {
    let app = TestApp::spawn().await;
    let t = team(&app, "Shelf").await;
    let a = app
        .space_as(&t.owner.1, "alpha", json!({ "workspaceId": t.id }))
        .await;
    let b = app
        .space_as(&t.editor.1, "beta", json!({ "workspaceId": t.id }))
        .await;
    app.space_as(
        &t.owner.1,
        "outside",
        json!({ "accessMode": "ORGANIZATION" }),
    )
    .await;
    let query = "query($id:ID!,$f:SpaceFilter){ workspace(id:$id){ \
        spaces(first:10,filter:$f){ totalCount edges{ node{ id } } } } }";

    let all = app
        .gql_as(Some(&t.viewer.1), query, json!({ "id": t.id }))
        .await;
    let filtered = app
        .gql_as(
            Some(&t.viewer.1),
            query,
            json!({ "id": t.id, "f": { "name": "a*" } }),
        )
        .await;

    let conn = &all.data()["workspace"]["spaces"];
    assert_eq!(conn["totalCount"], 2);
    let mut ids: Vec<&str> = conn["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(
        filtered.data()["workspace"]["spaces"]["edges"],
        json!([{ "node": { "id": a } }])
    );
}

#[tokio::test]
async fn moving_a_space_needs_owner_on_it_and_admin_or_more_in_the_target_workspace() {
    let app = TestApp::spawn().await;
    let t = team(&app, "Target").await;
    let editors_space = app.space_as(&t.editor.1, "editor's", json!({})).await;
    let admins_space = app.space_as(&t.admin.1, "admin's", json!({})).await;
    let outsiders_space = app.space_as(&t.outsider.1, "outsider's", json!({})).await;
    // The ADMIN can view (not own) someone else's space.
    let (_, stranger) = app.user("stranger", false).await;
    let viewed = app
        .space_as(
            &stranger,
            "viewed",
            json!({ "grants": [{ "subjectKind": "USER", "subjectId": t.admin.0, "permission": "VIEW" }] }),
        )
        .await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let mut e = Expectations::default();

    // (case, key, space, target workspace, outcome)
    #[rustfmt::skip]
    let cases = [
        ("EDITOR of the target",         &t.editor.1,   &editors_space,   &t.id,    "FORBIDDEN"),
        ("non-member of the target",     &t.outsider.1, &outsiders_space, &t.id,    "NOT_FOUND"),
        ("unknown target",               &t.admin.1,    &admins_space,    &unknown, "NOT_FOUND"),
        ("VIEW on the space",            &t.admin.1,    &viewed,          &t.id,    "OWNER_ONLY"),
        ("ADMIN of target, space owner", &t.admin.1,    &admins_space,    &t.id,    "OK"),
    ];
    for (case, key, s, ws, want) in cases {
        e.check(case, want, &move_space(&app, key, s, Some(ws)).await);
    }
    e.assert_all_met();
    assert_eq!(counts(&app, &t.id).await.0, 1);
    let inside = space(&app, &t.admin.1, &admins_space).await;
    assert_eq!(inside.data()["space"]["workspace"]["id"], json!(t.id));
    let editors = space(&app, &t.editor.1, &editors_space).await;
    assert_eq!(editors.data()["space"]["workspace"], Value::Null);

    let out = move_space(&app, &t.admin.1, &admins_space, None).await;

    assert_eq!(out.data()["moveSpace"]["workspace"], Value::Null);
    assert_eq!(counts(&app, &t.id).await.0, 0);
}

#[tokio::test]
async fn moving_a_space_between_workspaces_changes_who_can_see_it_immediately() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner", false).await;
    let a = app.workspace_as(&owner, "A").await;
    let b = app.workspace_as(&owner, "B").await;
    let (_, viewer_a) = member(&app, &owner, &a, "viewer-a", "VIEWER").await;
    let (_, viewer_b) = member(&app, &owner, &b, "viewer-b", "VIEWER").await;
    let s = app
        .space_as(&owner, "travelling", json!({ "workspaceId": a }))
        .await;
    let contents = [
        "the quarterly zeppelin report".to_string(),
        "minutes of the airship meeting".to_string(),
    ];
    let bytes: i64 = contents.iter().map(|c| c.len() as i64).sum();
    let memories = app.memories_as(&owner, &s, &contents).await;
    // What `key` sees of the space: (space(id) outcome, listed, found by search).
    let sees = |key: String| {
        let (app, s, m) = (&app, s.clone(), memories[0].clone());
        async move {
            let one = outcome(&space(app, &key, &s).await);
            let (listed, _) = space_ids(app, &key, json!({})).await;
            let hits = app.search_as(&key, json!({ "query": "zeppelin" })).await;
            (one, listed.contains(&s), hits.hit_ids().contains(&m))
        }
    };

    let a_before = counts(&app, &a).await;
    let b_before = counts(&app, &b).await;
    let viewer_a_before = sees(viewer_a.clone()).await;
    let viewer_b_before = sees(viewer_b.clone()).await;
    let moved = move_space(&app, &owner, &s, Some(&b)).await;
    let viewer_a_after = sees(viewer_a.clone()).await;
    let viewer_b_after = sees(viewer_b.clone()).await;
    let a_after = counts(&app, &a).await;
    let b_after = counts(&app, &b).await;

    assert_eq!(moved.data()["moveSpace"]["workspace"]["id"], json!(b));
    assert_eq!(viewer_a_before, ("OK".to_string(), true, true));
    assert_eq!(viewer_b_before, ("NOT_FOUND".to_string(), false, false));
    assert_eq!(viewer_a_after, ("NOT_FOUND".to_string(), false, false));
    assert_eq!(viewer_b_after, ("OK".to_string(), true, true));
    assert_eq!(a_before, (1, 2, bytes));
    assert_eq!(b_before, (0, 0, 0));
    assert_eq!(a_after, (0, 0, 0));
    assert_eq!(b_after, (1, 2, bytes));
}

#[tokio::test]
async fn workspace_counts_leave_out_deleted_spaces() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let ws = app.workspace_as(&key, "Counted").await;
    let kept = app
        .space_as(&key, "kept", json!({ "workspaceId": ws }))
        .await;
    let dropped = app
        .space_as(&key, "dropped", json!({ "workspaceId": ws }))
        .await;
    app.memories_as(&key, &kept, &["12345".to_string(), "678".to_string()])
        .await;
    app.memories_as(&key, &dropped, &["abcdefghij".to_string()])
        .await;
    let before = counts(&app, &ws).await;

    app.gql_as(
        Some(&key),
        "mutation($id:ID!){ deleteSpace(id:$id){ id } }",
        json!({ "id": dropped }),
    )
    .await
    .data();

    assert_eq!(before, (2, 3, 18));
    assert_eq!(counts(&app, &ws).await, (1, 2, 8));
}

// ---- Batching ----------------------------------------------------------------------------------

/// `members` is left out: it is resolved per workspace (one query each), so it is not batched.
const PAGE_WITH_COUNTS: &str = "query($n:Int){ workspaces(first:$n){ edges{ node{ \
    id spaceCount memoryCount usedStorage viewerRole } } } }";

/// Creates workspaces `from..to` as `key`; workspace i holds 1 + i % 2 spaces of two memories
/// each. Returns each workspace's id with its expected (spaces, memories, bytes).
async fn seed_workspaces(
    app: &TestApp,
    key: &str,
    from: usize,
    to: usize,
) -> Vec<(String, (i64, i64, i64))> {
    stream::iter(from..to)
        .map(|i| async move {
            let ws = app.workspace_as(key, &format!("ws-{i:03}")).await;
            let spaces = 1 + i % 2;
            let mut bytes = 0;
            for n in 0..spaces {
                let s = app
                    .space_as(key, &format!("space-{i}-{n}"), json!({ "workspaceId": ws }))
                    .await;
                let contents = [
                    format!("first memory of {i}/{n}"),
                    format!("a longer second memory of workspace {i}"),
                ];
                bytes += contents.iter().map(|c| c.len() as i64).sum::<i64>();
                app.memories_as(key, &s, &contents).await;
            }
            let spaces = spaces as i64;
            (ws, (spaces, 2 * spaces, bytes))
        })
        .buffer_unordered(4)
        .collect()
        .await
}

#[tokio::test]
async fn a_page_of_workspaces_with_counts_costs_the_same_statements_for_3_and_100() {
    let app = TestApp::spawn().await;
    let (_, key) = app.user("owner", false).await;
    let mut expected: HashMap<String, (i64, i64, i64)> = seed_workspaces(&app, &key, 0, 3)
        .await
        .into_iter()
        .collect();

    app.warm(&key).await;
    let before = app.statements();
    let page_3 = app
        .gql_as(Some(&key), PAGE_WITH_COUNTS, json!({ "n": 3 }))
        .await;
    let cost_3 = app.statements() - before;
    expected.extend(seed_workspaces(&app, &key, 3, 100).await);
    app.warm(&key).await;
    let before = app.statements();
    let page_100 = app
        .gql_as(Some(&key), PAGE_WITH_COUNTS, json!({ "n": 100 }))
        .await;
    let cost_100 = app.statements() - before;

    for (page, n) in [(&page_3, 3), (&page_100, 100)] {
        let edges = page.data()["workspaces"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), n);
        for node in edges.iter().map(|e| &e["node"]) {
            let id = node["id"].as_str().unwrap();
            let got = (
                node["spaceCount"].as_i64().unwrap(),
                node["memoryCount"].as_i64().unwrap(),
                node["usedStorage"].as_i64().unwrap(),
            );
            assert_eq!(Some(&got), expected.get(id), "workspace {id}");
            assert_eq!(node["viewerRole"], "OWNER");
        }
    }
    assert_eq!(
        cost_3, cost_100,
        "statements for 3 workspaces: {cost_3}, for 100: {cost_100} (N+1)"
    );
}

/// A workspace counts its spaces' memories as the spaces do: an expired memory leaves both
/// counts at once, before the sweep deletes it.
#[tokio::test]
async fn an_expired_memory_leaves_the_workspace_counts_with_its_spaces_counts() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let ws = app.workspace_as(&key, "Expiring").await;
    let space_id = app
        .space_as(&key, "inside", json!({ "workspaceId": ws }))
        .await;
    app.memory_as(&key, &space_id, "stays", json!({})).await;
    let expires = Utc::now() + chrono::Duration::milliseconds(1200);
    app.memory_as(
        &key,
        &space_id,
        "goes soon",
        json!({ "expiresAt": expires.to_rfc3339() }),
    )
    .await;
    let both = ("stays".len() + "goes soon".len()) as i64;
    assert_eq!(counts(&app, &ws).await, (1, 2, both));

    let wait =
        (expires - Utc::now()).to_std().unwrap_or_default() + std::time::Duration::from_millis(150);
    tokio::time::sleep(wait).await;

    let r = app
        .gql(
            "query($id:ID!){ space(id:$id){ memoryCount usedStorage } }",
            json!({ "id": space_id }),
        )
        .await;
    let s = &r.data()["space"];
    let (memories, bytes) = (
        s["memoryCount"].as_i64().unwrap(),
        s["usedStorage"].as_i64().unwrap(),
    );
    assert_eq!((memories, bytes), (1, "stays".len() as i64));
    assert_eq!(counts(&app, &ws).await, (1, memories, bytes));
}
