//! Sharing: shareSpace/unshareSpace, the flat sharing lists of createSpace/updateSpace, grant
//! validation, the assigned agent, and space tokens.
use std::collections::BTreeSet;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};

const GRANT_FIELDS: &str = "grants{ subjectKind subjectId permission }";

/// (subjectKind, subjectId, permission) of one grant.
type GrantRow = (String, Option<String>, String);

fn grant_rows(grants: &Value) -> BTreeSet<GrantRow> {
    grants
        .as_array()
        .unwrap_or_else(|| panic!("no grants list: {grants}"))
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

fn row(kind: &str, id: Option<&str>, permission: &str) -> GrantRow {
    (kind.into(), id.map(String::from), permission.into())
}

fn grant(kind: &str, id: &str, permission: &str) -> Value {
    json!({ "subjectKind": kind, "subjectId": id, "permission": permission })
}

/// `space(id)` as `key` with its grants, agent and the caller's permission.
async fn space(app: &TestApp, key: &str, id: &str) -> GqlResponse {
    app.gql_as(
        Some(key),
        &format!(
            "query($id:ID!){{ space(id:$id){{ id viewerPermission agent{{ id handle }} {GRANT_FIELDS} }} }}"
        ),
        json!({ "id": id }),
    )
    .await
}

/// The grants of a space as its owner sees them.
async fn grants_of(app: &TestApp, owner_key: &str, id: &str) -> BTreeSet<GrantRow> {
    grant_rows(&space(app, owner_key, id).await.data()["space"]["grants"])
}

async fn share(app: &TestApp, key: &str, id: &str, grants: Value) -> GqlResponse {
    app.gql_as(
        Some(key),
        &format!(
            "mutation($id:ID!,$g:[GrantInput!]!){{ shareSpace(id:$id,grants:$g){{ id {GRANT_FIELDS} }} }}"
        ),
        json!({ "id": id, "g": grants }),
    )
    .await
}

async fn unshare(app: &TestApp, key: &str, id: &str, grants: Value) -> GqlResponse {
    app.gql_as(
        Some(key),
        &format!(
            "mutation($id:ID!,$g:[GrantInput!]!){{ unshareSpace(id:$id,grants:$g){{ id {GRANT_FIELDS} }} }}"
        ),
        json!({ "id": id, "g": grants }),
    )
    .await
}

async fn create(app: &TestApp, key: &str, input: Value) -> GqlResponse {
    app.gql_as(
        Some(key),
        &format!(
            "mutation($i:CreateSpaceInput!){{ createSpace(input:$i){{ id {GRANT_FIELDS} }} }}"
        ),
        json!({ "i": input }),
    )
    .await
}

async fn update(app: &TestApp, key: &str, id: &str, input: Value) -> GqlResponse {
    app.gql_as(
        Some(key),
        &format!(
            "mutation($id:ID!,$i:UpdateSpaceInput!){{ updateSpace(id:$id,input:$i){{ id {GRANT_FIELDS} }} }}"
        ),
        json!({ "id": id, "i": input }),
    )
    .await
}

async fn assign_agent(app: &TestApp, key: &str, space: &str, agent: Option<&str>) -> GqlResponse {
    app.gql_as(
        Some(key),
        "mutation($s:ID!,$a:ID){ assignAgent(spaceId:$s,agentId:$a){ id agent{ id handle } } }",
        json!({ "s": space, "a": agent }),
    )
    .await
}

const CREATE_TOKEN: &str = "mutation($s:ID!,$p:Permission!,$e:DateTime){ \
    createSpaceToken(spaceId:$s,permission:$p,expiresAt:$e){ token spaceToken{ id permission expiresAt } } }";

/// The `extensions.invalidIds` of the single error, as a set.
fn invalid_ids(r: &GqlResponse) -> BTreeSet<String> {
    assert_eq!(r.code(), "VALIDATION_ERROR", "{}", r.body);
    r.error()["extensions"]["invalidIds"]
        .as_array()
        .unwrap_or_else(|| panic!("no invalidIds: {}", r.body))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn random_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[tokio::test]
async fn sharing_and_unsharing_round_trip_and_only_the_owner_sees_the_grants() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (_, owner) = app.user_in(&admin, "owner", false).await;
    let (viewer_id, viewer) = app.user_in(&admin, "viewer", false).await;
    let role = app.role_in(&admin, "analyst").await;
    let id = app.space_as(&owner, "shared", json!({})).await;

    let shared = share(
        &app,
        &owner,
        &id,
        json!([
            grant("USER", &viewer_id, "VIEW"),
            grant("ROLE", &role, "EDIT")
        ]),
    )
    .await;
    let as_owner = space(&app, &owner, &id).await;
    let as_viewer = space(&app, &viewer, &id).await;
    let unshared = unshare(
        &app,
        &owner,
        &id,
        json!([{ "subjectKind": "USER", "subjectId": viewer_id }]),
    )
    .await;
    let after = space(&app, &viewer, &id).await;

    let both = BTreeSet::from([
        row("USER", Some(&viewer_id), "VIEW"),
        row("ROLE", Some(&role), "EDIT"),
    ]);
    assert_eq!(grant_rows(&shared.data()["shareSpace"]["grants"]), both);
    assert_eq!(grant_rows(&as_owner.data()["space"]["grants"]), both);
    assert_eq!(as_viewer.data()["space"]["viewerPermission"], "VIEW");
    assert_eq!(as_viewer.data()["space"]["grants"], json!([]));
    assert_eq!(
        grant_rows(&unshared.data()["unshareSpace"]["grants"]),
        BTreeSet::from([row("ROLE", Some(&role), "EDIT")])
    );
    assert_eq!(after.code(), "NOT_FOUND");
}

#[tokio::test]
async fn resharing_a_subject_with_edit_upgrades_its_grant() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (user_id, user) = app.user_in(&admin, "grantee", false).await;
    let id = app.space_as(&admin, "upgrade", json!({})).await;
    share(&app, &admin, &id, json!([grant("USER", &user_id, "VIEW")]))
        .await
        .data();

    let r = share(&app, &admin, &id, json!([grant("USER", &user_id, "EDIT")])).await;

    assert_eq!(
        grant_rows(&r.data()["shareSpace"]["grants"]),
        BTreeSet::from([row("USER", Some(&user_id), "EDIT")])
    );
    assert_eq!(
        space(&app, &user, &id).await.data()["space"]["viewerPermission"],
        "EDIT"
    );
}

#[tokio::test]
async fn unknown_subject_ids_are_all_reported_in_one_validation_error() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let other_admin = app.other_org("elsewhere").await;
    let (foreign_user, _) = app.user_in(&other_admin, "foreigner", false).await;
    let id = app.space_as(&admin, "validated", json!({})).await;
    let bad = [
        ("USER", random_id()),
        ("USER", foreign_user),
        ("ROLE", random_id()),
        ("DEPARTMENT", random_id()),
        ("AGENT", random_id()),
        ("TENANT", random_id()),
    ];
    let grants: Vec<Value> = bad.iter().map(|(k, i)| grant(k, i, "VIEW")).collect();

    let r = share(&app, &admin, &id, json!(grants)).await;

    let expected: BTreeSet<String> = bad.iter().map(|(_, i)| i.clone()).collect();
    assert_eq!(invalid_ids(&r), expected);
    assert_eq!(r.field(), "grants");
    assert!(grants_of(&app, &admin, &id).await.is_empty());
}

#[tokio::test]
async fn create_space_reports_the_bad_ids_of_every_sharing_list_together() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (bad_user, bad_agent, bad_tenant) = (random_id(), random_id(), random_id());

    let r = create(
        &app,
        &admin,
        json!({
            "name": "never",
            "accessUsers": [bad_user],
            "allowedAgentIds": [bad_agent],
            "allowedTenantIds": [bad_tenant],
        }),
    )
    .await;
    let listed = app.gql("{ spaces{ totalCount } }", json!({})).await;

    assert_eq!(
        invalid_ids(&r),
        BTreeSet::from([bad_user, bad_agent, bad_tenant])
    );
    assert_eq!(r.field(), "accessUsers");
    assert_eq!(listed.data()["spaces"]["totalCount"], 0);
}

#[tokio::test]
async fn a_tenant_grant_to_the_spaces_own_organization_is_rejected() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let own_org = app.org_id_of(&admin).await;
    let id = app.space_as(&admin, "self-tenant", json!({})).await;

    let r = share(
        &app,
        &admin,
        &id,
        json!([grant("TENANT", &own_org, "VIEW")]),
    )
    .await;

    assert_eq!(r.code(), "VALIDATION_ERROR");
    assert_eq!(r.field(), "grants");
    assert!(grants_of(&app, &admin, &id).await.is_empty());
}

#[tokio::test]
async fn a_space_takes_at_most_ten_agent_grants() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let mut agents = Vec::new();
    for i in 0..11 {
        agents.push(app.agent_in(&admin, &format!("agent-{i}")).await.0);
    }
    let agent_grants =
        |ids: &[String]| -> Value { ids.iter().map(|a| grant("AGENT", a, "EDIT")).collect() };
    let stepwise = app.space_as(&admin, "stepwise", json!({})).await;
    let at_once = app.space_as(&admin, "at-once", json!({})).await;

    let ten = share(&app, &admin, &stepwise, agent_grants(&agents[..10])).await;
    let eleventh = share(&app, &admin, &stepwise, agent_grants(&agents[10..])).await;
    let eleven = share(&app, &admin, &at_once, agent_grants(&agents)).await;
    let created = create(
        &app,
        &admin,
        json!({ "name": "created-with-eleven", "allowedAgentIds": agents }),
    )
    .await;

    assert_eq!(
        ten.data()["shareSpace"]["grants"].as_array().unwrap().len(),
        10
    );
    assert_eq!(eleventh.code(), "VALIDATION_ERROR");
    assert_eq!(grants_of(&app, &admin, &stepwise).await.len(), 10);
    assert_eq!(eleven.code(), "VALIDATION_ERROR");
    assert!(grants_of(&app, &admin, &at_once).await.is_empty());
    assert_eq!(created.code(), "VALIDATION_ERROR");
}

#[tokio::test]
async fn create_space_sharing_lists_create_the_matching_grants() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (viewer, _) = app.user_in(&admin, "viewer", false).await;
    let (editor, _) = app.user_in(&admin, "editor", false).await;
    let viewing_role = app.role_in(&admin, "viewing").await;
    let editing_role = app.role_in(&admin, "editing").await;
    let department = app.department_in(&admin, "research").await;
    let (agent, _) = app.agent_in(&admin, "helper").await;
    let other_org = app.org_id_of(&app.other_org("partner").await).await;

    let r = create(
        &app,
        &admin,
        json!({
            "name": "lists",
            "accessUsers": [viewer],
            "accessDepartments": [department],
            "visibleToRoles": [viewing_role],
            "editableByUsers": ["*", editor],
            "editableByRoles": [editing_role],
            "allowedAgentIds": [agent],
            "allowedTenantIds": [other_org],
        }),
    )
    .await;

    assert_eq!(
        grant_rows(&r.data()["createSpace"]["grants"]),
        BTreeSet::from([
            row("USER", Some(&viewer), "VIEW"),
            row("DEPARTMENT", Some(&department), "VIEW"),
            row("ROLE", Some(&viewing_role), "VIEW"),
            row("ALL_USERS", None, "EDIT"),
            row("USER", Some(&editor), "EDIT"),
            row("ROLE", Some(&editing_role), "EDIT"),
            row("AGENT", Some(&agent), "EDIT"),
            row("TENANT", Some(&other_org), "VIEW"),
        ])
    );
}

#[tokio::test]
async fn update_space_with_a_flat_sharing_list_replaces_only_its_own_grants_and_grants_replaces_all(
) {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (first, _) = app.user_in(&admin, "first", false).await;
    let (second, _) = app.user_in(&admin, "second", false).await;
    let role = app.role_in(&admin, "editors").await;
    let created = create(
        &app,
        &admin,
        json!({ "name": "replaced", "accessUsers": [first], "editableByRoles": [role] }),
    )
    .await;
    let id = created.data()["createSpace"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let untouched = update(
        &app,
        &admin,
        &id,
        json!({ "description": "no sharing here" }),
    )
    .await;
    let replaced = update(&app, &admin, &id, json!({ "accessUsers": [second] })).await;
    let cleared = update(&app, &admin, &id, json!({ "grants": [] })).await;

    assert_eq!(
        grant_rows(&untouched.data()["updateSpace"]["grants"]),
        BTreeSet::from([
            row("USER", Some(&first), "VIEW"),
            row("ROLE", Some(&role), "EDIT"),
        ])
    );
    assert_eq!(
        grant_rows(&replaced.data()["updateSpace"]["grants"]),
        BTreeSet::from([
            row("USER", Some(&second), "VIEW"),
            row("ROLE", Some(&role), "EDIT"),
        ])
    );
    assert!(grant_rows(&cleared.data()["updateSpace"]["grants"]).is_empty());
}

#[tokio::test]
async fn an_assigned_agent_holds_edit_and_shows_as_the_space_agent() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (agent_id, agent_key) = app.agent_in(&admin, "worker").await;
    let id = app.space_as(&admin, "assigned", json!({})).await;

    let assigned = assign_agent(&app, &admin, &id, Some(&agent_id)).await;
    let as_agent = space(&app, &agent_key, &id).await;
    let unassigned = assign_agent(&app, &admin, &id, None).await;
    let after = space(&app, &agent_key, &id).await;

    assert_eq!(
        assigned.data()["assignAgent"]["agent"],
        json!({ "id": agent_id, "handle": "worker" })
    );
    assert_eq!(as_agent.data()["space"]["viewerPermission"], "EDIT");
    assert_eq!(as_agent.data()["space"]["agent"]["id"], json!(agent_id));
    assert!(unassigned.data()["assignAgent"]["agent"].is_null());
    assert_eq!(after.code(), "NOT_FOUND");
}

#[tokio::test]
async fn assigning_an_agent_of_another_organization_is_rejected() {
    let app = TestApp::spawn().await;
    let other_admin = app.other_org("elsewhere").await;
    let (foreign_agent, _) = app.agent_in(&other_admin, "foreign-agent").await;
    let id = app.space_as(&app.admin_key, "mine", json!({})).await;

    let r = assign_agent(&app, &app.admin_key, &id, Some(&foreign_agent)).await;

    assert_eq!(r.code(), "VALIDATION_ERROR");
    assert_eq!(r.field(), "agentId");
}

/// `space(id){ viewerPermission }` with the credential in one raw header.
async fn space_with_header(app: &TestApp, header: &str, value: String, id: &str) -> GqlResponse {
    let resp = app
        .client
        .post(format!("{}/graphql", app.url))
        .header(header, value)
        .json(&json!({
            "query": "query($id:ID!){ space(id:$id){ id viewerPermission } }",
            "variables": { "id": id },
        }))
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let body = resp.json().await.expect("JSON body");
    GqlResponse { status, body }
}

#[tokio::test]
async fn a_space_token_is_shown_once_and_works_in_all_three_headers() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let id = app.space_as(&admin, "tokened", json!({})).await;
    let expires = (Utc::now() + Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);

    let r = app
        .gql(CREATE_TOKEN, json!({ "s": id, "p": "VIEW", "e": expires }))
        .await;

    let created = &r.data()["createSpaceToken"];
    let token = created["token"].as_str().unwrap().to_string();
    assert_eq!(created["spaceToken"]["permission"], "VIEW");
    let at = |v: &Value| DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(at(&created["spaceToken"]["expiresAt"]), at(&json!(expires)));
    for (header, value) in [
        ("authorization", format!("Bearer {token}")),
        ("authorization", format!("Token {token}")),
        ("x-api-key", token.clone()),
    ] {
        let r = space_with_header(&app, header, value.clone(), &id).await;
        assert_eq!(
            r.data()["space"],
            json!({ "id": id, "viewerPermission": "VIEW" }),
            "{header}: {value}"
        );
    }
}

#[tokio::test]
async fn space_tokens_are_listed_to_the_owner_and_owner_only_to_a_view_grantee() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (_, owner) = app.user_in(&admin, "owner", false).await;
    let (viewer_id, viewer) = app.user_in(&admin, "viewer", false).await;
    let id = app
        .space_as(&owner, "listed", json!({ "accessUsers": [viewer_id] }))
        .await;
    let (token_id, _) = app.space_token_as(&owner, &id, "EDIT", None).await;
    let tokens = "query($id:ID!){ space(id:$id){ tokens{ id permission expiresAt revokedAt } } }";

    let as_owner = app.gql_as(Some(&owner), tokens, json!({ "id": id })).await;
    let as_viewer = app.gql_as(Some(&viewer), tokens, json!({ "id": id })).await;

    assert_eq!(
        as_owner.data()["space"]["tokens"],
        json!([{ "id": token_id, "permission": "EDIT", "expiresAt": null, "revokedAt": null }])
    );
    assert_eq!(as_viewer.code(), "OWNER_ONLY");
}

#[tokio::test]
async fn a_revoked_space_token_gets_401() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let id = app.space_as(&admin, "revoked", json!({})).await;
    let (token_id, token) = app.space_token_as(&admin, &id, "EDIT", None).await;
    let before = space_with_header(&app, "x-api-key", token.clone(), &id).await;

    let revoked = app
        .gql(
            "mutation($id:ID!){ revokeSpaceToken(id:$id) }",
            json!({ "id": token_id }),
        )
        .await;
    let after = space_with_header(&app, "x-api-key", token.clone(), &id).await;

    assert_eq!(before.data()["space"]["viewerPermission"], "EDIT");
    assert_eq!(revoked.data()["revokeSpaceToken"], json!(token_id));
    assert_eq!(after.status, 401, "{}", after.body);
    assert_eq!(after.code(), "UNAUTHENTICATED");
}

#[tokio::test]
async fn create_space_token_rejects_owner_permission_and_a_past_expiry() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let id = app.space_as(&admin, "strict", json!({})).await;
    let past = (Utc::now() - Duration::minutes(1)).to_rfc3339_opts(SecondsFormat::Secs, true);

    let owner = app
        .gql(CREATE_TOKEN, json!({ "s": id, "p": "OWNER", "e": null }))
        .await;
    let expired = app
        .gql(CREATE_TOKEN, json!({ "s": id, "p": "VIEW", "e": past }))
        .await;

    assert_eq!(owner.code(), "VALIDATION_ERROR");
    assert_eq!(owner.field(), "permission");
    assert_eq!(expired.code(), "VALIDATION_ERROR");
    assert_eq!(expired.field(), "expiresAt");
}
