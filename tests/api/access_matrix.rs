//! The access matrix of DESIGN.md §4: every kind of principal × every space operation, written
//! as one literal table; plus the space-token world and the audit trail of cross-tenant access.
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};

/// What a cell expects (or what was observed). For the `list` column, `Ok` means "the space is
/// listed and totalCount counts it", `NotFound` means "absent and not counted".
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    NotFound,
    Forbidden,
    OwnerOnly,
    /// HTTP 401 with code UNAUTHENTICATED.
    Unauthenticated,
    /// Anything else: another code, a 401 without the code, a list that disagrees with its count…
    Other(String),
}

const OK: Outcome = Outcome::Ok;
const NF: Outcome = Outcome::NotFound;
const OO: Outcome = Outcome::OwnerOnly;
const UA: Outcome = Outcome::Unauthenticated;

impl Outcome {
    fn of(r: &GqlResponse) -> Outcome {
        let codes = r.codes();
        if r.status == 401 {
            return if codes == ["UNAUTHENTICATED"] {
                Outcome::Unauthenticated
            } else {
                Outcome::Other(format!("HTTP 401 with codes {codes:?}"))
            };
        }
        match codes.as_slice() {
            [] => Outcome::Ok,
            [one] => match one.as_str() {
                "NOT_FOUND" => Outcome::NotFound,
                "FORBIDDEN" => Outcome::Forbidden,
                "OWNER_ONLY" => Outcome::OwnerOnly,
                "UNAUTHENTICATED" => {
                    Outcome::Other(format!("UNAUTHENTICATED with HTTP {}", r.status))
                }
                other => Outcome::Other(other.to_string()),
            },
            many => Outcome::Other(format!("{many:?}")),
        }
    }
}

/// The principal of a row, and (in [`fixture`]) how its space is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Owner,
    OrgAdmin,
    /// A plain user of the owner's organization; the space is PRIVATE.
    MemberOnPrivate,
    /// A plain user of the owner's organization; the space is ORGANIZATION.
    MemberOnOrganization,
    UserGrantView,
    UserGrantEdit,
    /// A user holding a role that has an EDIT grant.
    RoleGrantEdit,
    /// A user in a department that has a VIEW grant.
    DepartmentGrantView,
    /// A plain user of the organization; the space has `editableByUsers: ["*"]`.
    AllUsersEdit,
    /// An agent with a VIEW grant.
    AgentGrantView,
    /// The agent set by `assignAgent`.
    AssignedAgent,
    /// An agent of the owner's organization; the space is ORGANIZATION.
    AgentOnOrganization,
    /// An agent of the owner's organization; the space has `editableByUsers: ["*"]` (agents are
    /// not users, so it does not apply to them).
    AgentOnAllUsersEdit,
    /// A user of another organization; the space is ORGANIZATION.
    OtherOrgUser,
    /// The admin of another organization; the space is PRIVATE.
    OtherOrgAdmin,
    /// A user of another organization that has a TENANT grant (VIEW).
    OtherOrgTenantGrant,
    /// A user of another organization; the space is PUBLIC.
    OtherOrgOnPublic,
    ViewToken,
    EditToken,
    RevokedToken,
    ExpiredToken,
    NoKey,
    /// A VIEWER member of the workspace holding the (PRIVATE) space.
    WorkspaceViewer,
    /// An EDITOR member of the workspace holding the (PRIVATE) space.
    WorkspaceEditor,
    /// An ADMIN member of the workspace holding the (PRIVATE) space.
    WorkspaceAdmin,
    /// A second OWNER member (not the space's owner) of the workspace holding the space.
    WorkspaceOwner,
    /// An ADMIN of another workspace of the organization; the space is PRIVATE in the first.
    OtherWorkspaceAdmin,
}

use Who::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Get,
    List,
    Update,
    Share,
    Delete,
    Purge,
    CreateToken,
}

const OPS: [Op; 7] = [
    Op::Get,
    Op::List,
    Op::Update,
    Op::Share,
    Op::Delete,
    Op::Purge,
    Op::CreateToken,
];

/// (principal, its `viewerPermission` on the space ("-" when it cannot read it), one outcome per
/// column of [`OPS`]).
#[rustfmt::skip]
const MATRIX: [(Who, &str, [Outcome; 7]); 27] = [
    //                                get list update share delete purge createToken
    (Owner,                "OWNER", [OK, OK,  OK,    OK,   OK,    OK,   OK]),
    (OrgAdmin,             "OWNER", [OK, OK,  OK,    OK,   OK,    OK,   OK]),
    (MemberOnPrivate,      "-",     [NF, NF,  NF,    NF,   NF,    NF,   NF]),
    (MemberOnOrganization, "VIEW",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (UserGrantView,        "VIEW",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (UserGrantEdit,        "EDIT",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (RoleGrantEdit,        "EDIT",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (DepartmentGrantView,  "VIEW",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (AllUsersEdit,         "EDIT",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (AgentGrantView,       "VIEW",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (AssignedAgent,        "EDIT",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (AgentOnOrganization,  "VIEW",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (AgentOnAllUsersEdit,  "-",     [NF, NF,  NF,    NF,   NF,    NF,   NF]),
    (OtherOrgUser,         "-",     [NF, NF,  NF,    NF,   NF,    NF,   NF]),
    (OtherOrgAdmin,        "-",     [NF, NF,  NF,    NF,   NF,    NF,   NF]),
    (OtherOrgTenantGrant,  "VIEW",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (OtherOrgOnPublic,     "VIEW",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (ViewToken,            "VIEW",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (EditToken,            "EDIT",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (RevokedToken,         "-",     [UA, UA,  UA,    UA,   UA,    UA,   UA]),
    (ExpiredToken,         "-",     [UA, UA,  UA,    UA,   UA,    UA,   UA]),
    (NoKey,                "-",     [UA, UA,  UA,    UA,   UA,    UA,   UA]),
    // Workspace roles on a PRIVATE space of the workspace: VIEWER → VIEW, EDITOR → EDIT,
    // ADMIN and OWNER → OWNER; membership elsewhere gives nothing.
    (WorkspaceViewer,      "VIEW",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (WorkspaceEditor,      "EDIT",  [OK, OK,  OO,    OO,   OO,    OO,   OO]),
    (WorkspaceAdmin,       "OWNER", [OK, OK,  OK,    OK,   OK,    OK,   OK]),
    (WorkspaceOwner,       "OWNER", [OK, OK,  OK,    OK,   OK,    OK,   OK]),
    (OtherWorkspaceAdmin,  "-",     [NF, NF,  NF,    NF,   NF,    NF,   NF]),
];

/// Everyone the matrix needs, created once per test.
struct World {
    owner_key: String,
    admin_key: String,
    member_key: String,
    viewer: (String, String),
    editor: (String, String),
    role_id: String,
    role_holder_key: String,
    department_id: String,
    department_member_key: String,
    grantee_agent: (String, String),
    assigned_agent: (String, String),
    other_org_id: String,
    other_user_key: String,
    other_admin_key: String,
    /// A workspace of the owner (its OWNER) with one member per role.
    workspace_id: String,
    workspace_viewer_key: String,
    workspace_editor_key: String,
    workspace_admin_key: String,
    workspace_owner_key: String,
    other_workspace_admin_key: String,
}

/// A new user of the default organization, added to `workspace_id` with `role` by `key`;
/// returns the user's API key.
async fn workspace_member(
    app: &TestApp,
    key: &str,
    workspace_id: &str,
    name: &str,
    role: &str,
) -> String {
    let (user_id, user_key) = app.user_in(&app.admin_key, name, false).await;
    app.add_workspace_member_as(key, workspace_id, &user_id, role)
        .await
        .data();
    user_key
}

async fn world(app: &TestApp) -> World {
    let admin = app.admin_key.clone();
    let (_, owner_key) = app.user_in(&admin, "owner", false).await;
    let (_, admin_key) = app.user_in(&admin, "second-admin", true).await;
    let (_, member_key) = app.user_in(&admin, "member", false).await;
    let viewer = app.user_in(&admin, "viewer", false).await;
    let editor = app.user_in(&admin, "editor", false).await;
    let role_id = app.role_in(&admin, "analyst").await;
    let (role_holder, role_holder_key) = app.user_in(&admin, "role-holder", false).await;
    app.assign_role_as(&admin, &role_holder, &role_id).await;
    let department_id = app.department_in(&admin, "research").await;
    let (dept_member, department_member_key) = app.user_in(&admin, "dept-member", false).await;
    app.assign_department_as(&admin, &dept_member, &department_id)
        .await;
    let grantee_agent = app.agent_in(&admin, "grantee-agent").await;
    let assigned_agent = app.agent_in(&admin, "assigned-agent").await;
    let other_admin_key = app.other_org("other").await;
    let (_, other_user_key) = app.user_in(&other_admin_key, "foreigner", false).await;
    let other_org_id = app.org_id_of(&other_admin_key).await;
    let workspace_id = app.workspace_as(&owner_key, "matrix-workspace").await;
    let in_workspace = |name, role| workspace_member(app, &owner_key, &workspace_id, name, role);
    let workspace_viewer_key = in_workspace("ws-viewer", "VIEWER").await;
    let workspace_editor_key = in_workspace("ws-editor", "EDITOR").await;
    let workspace_admin_key = in_workspace("ws-admin", "ADMIN").await;
    let workspace_owner_key = in_workspace("ws-owner", "OWNER").await;
    let (_, other_workspace_creator) = app.user_in(&admin, "other-ws-creator", false).await;
    let other_workspace = app
        .workspace_as(&other_workspace_creator, "elsewhere")
        .await;
    let other_workspace_admin_key = workspace_member(
        app,
        &other_workspace_creator,
        &other_workspace,
        "other-ws-admin",
        "ADMIN",
    )
    .await;
    World {
        owner_key,
        admin_key,
        member_key,
        viewer,
        editor,
        role_id,
        role_holder_key,
        department_id,
        department_member_key,
        grantee_agent,
        assigned_agent,
        other_org_id,
        other_user_key,
        other_admin_key,
        workspace_id,
        workspace_viewer_key,
        workspace_editor_key,
        workspace_admin_key,
        workspace_owner_key,
        other_workspace_admin_key,
    }
}

/// A fresh space of `world`'s owner, set up for `who`, with the key `who` calls with.
struct Fixture {
    space_id: String,
    name: String,
    key: Option<String>,
}

/// A list of one grant, for `grants` inputs and `shareSpace`.
fn grant(kind: &str, id: &str, permission: &str) -> Value {
    json!([{ "subjectKind": kind, "subjectId": id, "permission": permission }])
}

async fn fixture(app: &TestApp, w: &World, who: Who) -> Fixture {
    let name = format!("matrix-{}", uuid::Uuid::now_v7().simple());
    let input = match who {
        MemberOnOrganization | AgentOnOrganization | OtherOrgUser => {
            json!({ "accessMode": "ORGANIZATION" })
        }
        OtherOrgOnPublic => json!({ "accessMode": "PUBLIC" }),
        UserGrantView => json!({ "grants": grant("USER", &w.viewer.0, "VIEW") }),
        UserGrantEdit => json!({ "grants": grant("USER", &w.editor.0, "EDIT") }),
        RoleGrantEdit => json!({ "grants": grant("ROLE", &w.role_id, "EDIT") }),
        DepartmentGrantView => {
            json!({ "grants": grant("DEPARTMENT", &w.department_id, "VIEW") })
        }
        AllUsersEdit | AgentOnAllUsersEdit => json!({ "editableByUsers": ["*"] }),
        AgentGrantView => json!({ "grants": grant("AGENT", &w.grantee_agent.0, "VIEW") }),
        OtherOrgTenantGrant => json!({ "grants": grant("TENANT", &w.other_org_id, "VIEW") }),
        WorkspaceViewer | WorkspaceEditor | WorkspaceAdmin | WorkspaceOwner
        | OtherWorkspaceAdmin => {
            json!({ "accessMode": "PRIVATE", "workspaceId": w.workspace_id })
        }
        _ => json!({ "accessMode": "PRIVATE" }),
    };
    let space_id = app.space_as(&w.owner_key, &name, input).await;
    let token = |permission: &'static str, expires_at: Option<String>| {
        let space_id = space_id.clone();
        async move {
            app.space_token_as(&w.owner_key, &space_id, permission, expires_at)
                .await
        }
    };
    let key = match who {
        Owner => Some(w.owner_key.clone()),
        OrgAdmin => Some(w.admin_key.clone()),
        MemberOnPrivate | MemberOnOrganization | AllUsersEdit => Some(w.member_key.clone()),
        UserGrantView => Some(w.viewer.1.clone()),
        UserGrantEdit => Some(w.editor.1.clone()),
        RoleGrantEdit => Some(w.role_holder_key.clone()),
        DepartmentGrantView => Some(w.department_member_key.clone()),
        AgentGrantView | AgentOnOrganization | AgentOnAllUsersEdit => {
            Some(w.grantee_agent.1.clone())
        }
        AssignedAgent => {
            let r = app
                .gql_as(
                    Some(&w.owner_key),
                    "mutation($s:ID!,$a:ID){ assignAgent(spaceId:$s,agentId:$a){ id } }",
                    json!({ "s": space_id, "a": w.assigned_agent.0 }),
                )
                .await;
            r.data();
            Some(w.assigned_agent.1.clone())
        }
        OtherOrgUser | OtherOrgTenantGrant | OtherOrgOnPublic => Some(w.other_user_key.clone()),
        OtherOrgAdmin => Some(w.other_admin_key.clone()),
        ViewToken => Some(token("VIEW", None).await.1),
        EditToken => Some(token("EDIT", None).await.1),
        RevokedToken => {
            let (id, secret) = token("VIEW", None).await;
            let r = app
                .gql_as(
                    Some(&w.owner_key),
                    "mutation($id:ID!){ revokeSpaceToken(id:$id) }",
                    json!({ "id": id }),
                )
                .await;
            r.data();
            Some(secret)
        }
        ExpiredToken => {
            // The shortest expiry the server accepts is "in the future"; the test waits it out
            // once, after every fixture is built.
            let at = (Utc::now() + chrono::Duration::seconds(2))
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            Some(token("EDIT", Some(at)).await.1)
        }
        NoKey => None,
        WorkspaceViewer => Some(w.workspace_viewer_key.clone()),
        WorkspaceEditor => Some(w.workspace_editor_key.clone()),
        WorkspaceAdmin => Some(w.workspace_admin_key.clone()),
        WorkspaceOwner => Some(w.workspace_owner_key.clone()),
        OtherWorkspaceAdmin => Some(w.other_workspace_admin_key.clone()),
    };
    Fixture {
        space_id,
        name,
        key,
    }
}

const GET: &str = "query($id:ID!){ space(id:$id){ id viewerPermission deletedAt } }";

/// Runs `op` on the fixture's space as its principal; returns the outcome and, for a readable
/// `get`, the viewerPermission seen.
async fn run(app: &TestApp, f: &Fixture, op: Op) -> (Outcome, Option<String>, Value) {
    let key = f.key.as_deref();
    let id = &f.space_id;
    let r = match op {
        Op::Get => app.gql_as(key, GET, json!({ "id": id })).await,
        Op::List => {
            app.gql_as(
                key,
                "query($n:String!){ spaces(first:50, filter:{name:$n}){ totalCount edges{ node{ id } } } }",
                json!({ "n": f.name }),
            )
            .await
        }
        Op::Update => {
            app.gql_as(
                key,
                "mutation($id:ID!){ updateSpace(id:$id,input:{description:\"changed\"}){ id } }",
                json!({ "id": id }),
            )
            .await
        }
        Op::Share => {
            app.gql_as(
                key,
                "mutation($id:ID!){ shareSpace(id:$id,grants:[{subjectKind:ALL_USERS,permission:VIEW}]){ id } }",
                json!({ "id": id }),
            )
            .await
        }
        Op::Delete => {
            app.gql_as(
                key,
                "mutation($id:ID!){ deleteSpace(id:$id){ id deletedAt } }",
                json!({ "id": id }),
            )
            .await
        }
        Op::Purge => {
            app.gql_as(key, "mutation($id:ID!){ purgeSpace(id:$id) }", json!({ "id": id }))
                .await
        }
        Op::CreateToken => {
            app.gql_as(
                key,
                "mutation($id:ID!){ createSpaceToken(spaceId:$id,permission:VIEW){ token spaceToken{ id } } }",
                json!({ "id": id }),
            )
            .await
        }
    };
    let mut outcome = Outcome::of(&r);
    let mut permission = None;
    if outcome == Outcome::Ok {
        let data = &r.body["data"];
        match op {
            Op::Get => permission = data["space"]["viewerPermission"].as_str().map(String::from),
            Op::List => {
                let listed = data["spaces"]["edges"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["node"]["id"] == json!(id)));
                let total = data["spaces"]["totalCount"].as_i64();
                outcome = match (listed, total) {
                    (true, Some(1)) => Outcome::Ok,
                    (false, Some(0)) => Outcome::NotFound,
                    _ => Outcome::Other(format!("listed={listed} but totalCount={total:?}")),
                };
            }
            Op::Delete if data["deleteSpace"]["deletedAt"].is_null() => {
                outcome = Outcome::Other("deleteSpace answered without deletedAt".into());
            }
            _ => {}
        }
    }
    (outcome, permission, r.body)
}

/// After a delete or purge, whether the space is still there (and live) for its owner.
async fn intact(app: &TestApp, w: &World, f: &Fixture) -> bool {
    let r = app
        .gql_as(Some(&w.owner_key), GET, json!({ "id": f.space_id }))
        .await;
    r.codes().is_empty() && r.body["data"]["space"]["deletedAt"].is_null()
}

#[tokio::test]
async fn every_principal_gets_exactly_the_access_the_matrix_says() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    // Every cell gets a fresh space (delete and purge are destructive), built before any runs,
    // so the expired tokens need one short wait only.
    let mut cells = Vec::new();
    for (who, permission, expected) in &MATRIX {
        for (op, want) in OPS.iter().zip(expected.iter()) {
            cells.push((
                *who,
                *permission,
                *op,
                want.clone(),
                fixture(&app, &w, *who).await,
            ));
        }
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let mut failures = Vec::new();
    for (who, permission, op, want, f) in &cells {
        let (got, seen_permission, body) = run(&app, f, *op).await;
        if got != *want {
            failures.push(format!(
                "{who:?} × {op:?}: expected {want:?}, got {got:?}; {body}"
            ));
            continue;
        }
        if *op == Op::Get && got == Outcome::Ok && seen_permission.as_deref() != Some(*permission) {
            failures.push(format!(
                "{who:?} × {op:?}: viewerPermission expected {permission}, got {seen_permission:?}"
            ));
        }
        match op {
            Op::Delete | Op::Purge if got != Outcome::Ok && !intact(&app, &w, f).await => {
                failures.push(format!("{who:?} × {op:?}: refused, yet the space is gone"));
            }
            Op::Purge if got == Outcome::Ok && intact(&app, &w, f).await => {
                failures.push(format!(
                    "{who:?} × {op:?}: ok, yet the space is still there"
                ));
            }
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cells are wrong:\n{}",
        failures.len(),
        cells.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_space_token_reaches_its_own_space_and_nothing_else() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let own = app.space_as(&admin, "own", json!({})).await;
    let org_wide = app
        .space_as(&admin, "org-wide", json!({ "accessMode": "ORGANIZATION" }))
        .await;
    let public = app
        .space_as(&admin, "public", json!({ "accessMode": "PUBLIC" }))
        .await;
    let (_, token) = app.space_token_as(&admin, &own, "EDIT", None).await;

    let list = app
        .gql_as(
            Some(&token),
            "{ spaces{ totalCount edges{ node{ id viewerPermission } } } }",
            json!({}),
        )
        .await;
    let org_wide_get = app
        .gql_as(Some(&token), GET, json!({ "id": org_wide }))
        .await;
    let public_get = app.gql_as(Some(&token), GET, json!({ "id": public })).await;
    let viewer = app
        .gql_as(Some(&token), "{ viewer{ organization{ id } } }", json!({}))
        .await;

    let spaces = &list.data()["spaces"];
    assert_eq!(spaces["totalCount"], 1, "{}", list.body);
    assert_eq!(
        spaces["edges"],
        json!([{ "node": { "id": own, "viewerPermission": "EDIT" } }])
    );
    assert_eq!(org_wide_get.code(), "NOT_FOUND");
    assert_eq!(public_get.code(), "NOT_FOUND");
    assert_eq!(viewer.code(), "FORBIDDEN");
}

// ---- Audit -------------------------------------------------------------------------------------

const AUDIT: &str = "query($r:ID,$a:String){ auditEvents(filter:{resourceId:$r,action:$a}){ \
    totalCount edges{ node{ action actorKind resourceType resourceId \
      actor{ __typename ... on User{ id } ... on Agent{ id } } actorOrganization{ id } } } } }";

/// The audit events on `resource_id` as the bootstrap admin, oldest first.
async fn audit_events(app: &TestApp, resource_id: &str) -> Vec<Value> {
    let r = app.gql(AUDIT, json!({ "r": resource_id, "a": null })).await;
    let conn = &r.data()["auditEvents"];
    let mut nodes: Vec<Value> = conn["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    assert_eq!(conn["totalCount"], nodes.len(), "{}", r.body);
    nodes.reverse();
    nodes
}

/// A space of the default org shared (TENANT VIEW) with a second org; returns (space, reader
/// key, reader id, reader org id).
async fn tenant_shared_space(app: &TestApp) -> (String, String, String, String) {
    let other_admin = app.other_org("reader-org").await;
    let (reader_id, reader_key) = app.user_in(&other_admin, "reader", false).await;
    let reader_org = app.org_id_of(&reader_key).await;
    let space = app
        .space_as(
            &app.admin_key,
            "shared-out",
            json!({ "allowedTenantIds": [reader_org] }),
        )
        .await;
    (space, reader_key, reader_id, reader_org)
}

#[tokio::test]
async fn a_cross_tenant_read_writes_one_space_read_event_naming_the_reader() {
    let app = TestApp::spawn().await;
    let (space, reader_key, reader_id, reader_org) = tenant_shared_space(&app).await;

    let r = app
        .gql_as(Some(&reader_key), GET, json!({ "id": space }))
        .await;

    assert_eq!(r.data()["space"]["viewerPermission"], "VIEW");
    let events = audit_events(&app, &space).await;
    assert_eq!(
        events,
        vec![json!({
            "action": "space.read",
            "actorKind": "USER",
            "resourceType": "space",
            "resourceId": space,
            "actor": { "__typename": "User", "id": reader_id },
            "actorOrganization": { "id": reader_org },
        })]
    );
}

#[tokio::test]
async fn a_cross_tenant_list_appearance_writes_a_space_list_event() {
    let app = TestApp::spawn().await;
    let (space, reader_key, reader_id, reader_org) = tenant_shared_space(&app).await;

    let r = app
        .gql_as(
            Some(&reader_key),
            "{ spaces{ edges{ node{ id } } } }",
            json!({}),
        )
        .await;

    assert_eq!(
        r.data()["spaces"]["edges"],
        json!([{ "node": { "id": space } }])
    );
    let events = audit_events(&app, &space).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["action"], "space.list");
    assert_eq!(events[0]["actor"]["id"], json!(reader_id));
    assert_eq!(events[0]["actorOrganization"]["id"], json!(reader_org));
}

#[tokio::test]
async fn a_same_org_read_or_list_writes_no_event() {
    let app = TestApp::spawn().await;
    let (_, member_key) = app.user_in(&app.admin_key, "member", false).await;
    let space = app
        .space_as(
            &app.admin_key,
            "org-wide",
            json!({ "accessMode": "ORGANIZATION" }),
        )
        .await;

    let read = app
        .gql_as(Some(&member_key), GET, json!({ "id": space }))
        .await;
    let list = app
        .gql_as(Some(&member_key), "{ spaces{ totalCount } }", json!({}))
        .await;

    assert_eq!(read.data()["space"]["viewerPermission"], "VIEW");
    assert_eq!(list.data()["spaces"]["totalCount"], 1);
    assert_eq!(audit_events(&app, &space).await, Vec::<Value>::new());
}

#[tokio::test]
async fn audit_events_are_forbidden_to_non_admins_and_space_tokens() {
    let app = TestApp::spawn().await;
    let (_, member_key) = app.user_in(&app.admin_key, "member", false).await;
    let space = app.space_as(&member_key, "mine", json!({})).await;
    let (_, token) = app.space_token_as(&member_key, &space, "EDIT", None).await;

    let as_member = app.gql_as(Some(&member_key), AUDIT, json!({})).await;
    let as_token = app.gql_as(Some(&token), AUDIT, json!({})).await;

    assert_eq!(as_member.code(), "FORBIDDEN");
    assert_eq!(as_token.code(), "FORBIDDEN");
}

#[tokio::test]
async fn share_space_and_create_space_token_are_audited() {
    let app = TestApp::spawn().await;
    let (owner_id, owner_key) = app.user_in(&app.admin_key, "owner", false).await;
    let (viewer_id, _) = app.user_in(&app.admin_key, "viewer", false).await;
    let space = app.space_as(&owner_key, "audited", json!({})).await;

    app.share_as(&owner_key, &space, grant("USER", &viewer_id, "VIEW"))
        .await
        .data();
    let (token_id, _) = app.space_token_as(&owner_key, &space, "VIEW", None).await;

    let share = audit_events(&app, &space).await;
    assert_eq!(share.len(), 1, "{share:?}");
    assert_eq!(share[0]["action"], "space.share");
    assert_eq!(share[0]["actor"]["id"], json!(owner_id));
    let token = audit_events(&app, &token_id).await;
    assert_eq!(token.len(), 1, "{token:?}");
    assert_eq!(token[0]["action"], "space_token.create");
    assert_eq!(token[0]["resourceType"], "space_token");
    assert_eq!(token[0]["actor"]["id"], json!(owner_id));
}
