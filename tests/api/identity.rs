//! The directory: users, roles, departments, agents, API keys, and who the viewer is.
use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};

const CREATE_USER: &str = "mutation($n:String!,$e:String!,$a:Boolean!){ createUser(input:{name:$n,email:$e,isAdmin:$a}){ id name email isAdmin organization{ handle } } }";
const CREATE_ROLE: &str = "mutation($n:String!){ createRole(input:{name:$n}){ id name } }";
const CREATE_DEPARTMENT: &str =
    "mutation($n:String!){ createDepartment(input:{name:$n}){ id name } }";
const CREATE_AGENT: &str =
    "mutation($h:String!,$n:String!){ createAgent(input:{handle:$h,name:$n}){ id handle name organization{ handle } } }";
const ASSIGN_ROLE: &str =
    "mutation($u:ID!,$r:ID!){ assignRole(userId:$u,roleId:$r){ id roles{ name } } }";
const ASSIGN_DEPARTMENT: &str = "mutation($u:ID!,$d:ID!){ assignDepartment(userId:$u,departmentId:$d){ id departments{ name } } }";
const CREATE_KEY: &str = "mutation($i:CreateApiKeyInput!){ createApiKey(input:$i){ key apiKey{ id name prefix createdAt revokedAt } } }";
const REVOKE_KEY: &str = "mutation($id:ID!){ revokeApiKey(id:$id) }";
const VIEWER: &str = "{ viewer { principal { __typename ... on User { id name isAdmin } ... on Agent { id handle name } } organization { handle } roles { name } departments { name } } }";

fn id_of(r: &GqlResponse, field: &str) -> String {
    r.data()[field]["id"].as_str().unwrap().to_string()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn an_admin_creates_users_roles_departments_and_agents() {
    let app = TestApp::spawn().await;

    let user = app
        .gql(
            CREATE_USER,
            json!({"n": "Ada", "e": "ada@example.com", "a": false}),
        )
        .await;
    let role = app.gql(CREATE_ROLE, json!({"n": "researcher"})).await;
    let department = app.gql(CREATE_DEPARTMENT, json!({"n": "R&D"})).await;
    let agent = app
        .gql(
            CREATE_AGENT,
            json!({"h": "research-bot_1.v2", "n": "Research bot"}),
        )
        .await;

    let u = &user.data()["createUser"];
    assert_eq!(u["name"], "Ada");
    assert_eq!(u["email"], "ada@example.com");
    assert_eq!(u["isAdmin"], false);
    assert_eq!(u["organization"]["handle"], "default");
    assert_eq!(role.data()["createRole"]["name"], "researcher");
    assert_eq!(department.data()["createDepartment"]["name"], "R&D");
    let a = &agent.data()["createAgent"];
    assert_eq!(a["handle"], "research-bot_1.v2");
    assert_eq!(a["name"], "Research bot");
    assert_eq!(a["organization"]["handle"], "default");
}

#[tokio::test]
async fn the_viewer_is_the_calling_user_with_organization_roles_and_departments() {
    let app = TestApp::spawn().await;
    let (user_id, key) = app.user("Grace", false).await;
    let role_b = id_of(
        &app.gql(CREATE_ROLE, json!({"n": "reviewer"})).await,
        "createRole",
    );
    let role_a = id_of(
        &app.gql(CREATE_ROLE, json!({"n": "author"})).await,
        "createRole",
    );
    let _unassigned = app.gql(CREATE_ROLE, json!({"n": "bystander"})).await;
    let dept = id_of(
        &app.gql(CREATE_DEPARTMENT, json!({"n": "Platform"})).await,
        "createDepartment",
    );
    let before = app.gql_as(Some(&key), VIEWER, json!({})).await;

    let assigned_b = app
        .gql(ASSIGN_ROLE, json!({"u": user_id, "r": role_b}))
        .await;
    let assigned_a = app
        .gql(ASSIGN_ROLE, json!({"u": user_id, "r": role_a}))
        .await;
    let assigned_twice = app
        .gql(ASSIGN_ROLE, json!({"u": user_id, "r": role_a}))
        .await;
    let in_dept = app
        .gql(ASSIGN_DEPARTMENT, json!({"u": user_id, "d": dept}))
        .await;
    let after = app.gql_as(Some(&key), VIEWER, json!({})).await;

    let v = &before.data()["viewer"];
    assert_eq!(v["principal"]["__typename"], "User");
    assert_eq!(v["principal"]["id"], user_id.as_str());
    assert_eq!(v["principal"]["name"], "Grace");
    assert_eq!(v["principal"]["isAdmin"], false);
    assert_eq!(v["organization"]["handle"], "default");
    assert_eq!(v["roles"], json!([]));
    assert_eq!(v["departments"], json!([]));
    assert_eq!(
        names(&assigned_b.data()["assignRole"]["roles"]),
        ["reviewer"]
    );
    assert_eq!(
        names(&assigned_a.data()["assignRole"]["roles"]),
        ["author", "reviewer"]
    );
    assert_eq!(
        names(&assigned_twice.data()["assignRole"]["roles"]),
        ["author", "reviewer"],
        "assigning twice is a no-op"
    );
    assert_eq!(
        names(&in_dept.data()["assignDepartment"]["departments"]),
        ["Platform"]
    );
    let v = &after.data()["viewer"];
    assert_eq!(v["principal"]["name"], "Grace");
    assert_eq!(names(&v["roles"]), ["author", "reviewer"]);
    assert_eq!(names(&v["departments"]), ["Platform"]);
}

#[tokio::test]
async fn the_bootstrap_admin_is_an_admin_user_of_the_default_organization() {
    let app = TestApp::spawn().await;

    let r = app.gql(VIEWER, json!({})).await;

    let v = &r.data()["viewer"];
    assert_eq!(v["principal"]["__typename"], "User");
    assert_eq!(v["principal"]["isAdmin"], true);
    assert_eq!(v["organization"]["handle"], "default");
}

#[tokio::test]
async fn an_agent_key_authenticates_as_the_agent() {
    let app = TestApp::spawn().await;
    let (agent_id, key) = app.agent("helper-bot").await;

    let r = app.gql_as(Some(&key), VIEWER, json!({})).await;

    let v = &r.data()["viewer"];
    assert_eq!(v["principal"]["__typename"], "Agent");
    assert_eq!(v["principal"]["id"], agent_id.as_str());
    assert_eq!(v["principal"]["handle"], "helper-bot");
    assert_eq!(v["organization"]["handle"], "default");
    assert_eq!(v["roles"], json!([]));
    assert_eq!(v["departments"], json!([]));
}

#[tokio::test]
async fn a_non_admin_user_is_forbidden_to_manage_the_directory() {
    let app = TestApp::spawn().await;
    let (peer_id, _) = app.user("peer", false).await;
    let (_, key) = app.user("plain", false).await;
    let (agent_id, agent_key) = app.agent("some-agent").await;
    let role = id_of(&app.gql(CREATE_ROLE, json!({"n": "r"})).await, "createRole");
    let dept = id_of(
        &app.gql(CREATE_DEPARTMENT, json!({"n": "d"})).await,
        "createDepartment",
    );
    let peer_key = app
        .gql(
            CREATE_KEY,
            json!({"i": {"userId": peer_id, "name": "peer's"}}),
        )
        .await;
    let peer_key_id = peer_key.data()["createApiKey"]["apiKey"]["id"].clone();
    let attempts: Vec<(&str, &str, Value)> = vec![
        (
            "createUser",
            CREATE_USER,
            json!({"n": "x", "e": "x@example.com", "a": false}),
        ),
        (
            "createUser as admin",
            CREATE_USER,
            json!({"n": "x", "e": "x2@example.com", "a": true}),
        ),
        ("createRole", CREATE_ROLE, json!({"n": "new-role"})),
        (
            "createDepartment",
            CREATE_DEPARTMENT,
            json!({"n": "new-dept"}),
        ),
        ("assignRole", ASSIGN_ROLE, json!({"u": peer_id, "r": role})),
        (
            "assignDepartment",
            ASSIGN_DEPARTMENT,
            json!({"u": peer_id, "d": dept}),
        ),
        (
            "createAgent",
            CREATE_AGENT,
            json!({"h": "new-agent", "n": "a"}),
        ),
        (
            "createApiKey for another user",
            CREATE_KEY,
            json!({"i": {"userId": peer_id, "name": "stolen"}}),
        ),
        (
            "createApiKey for an agent",
            CREATE_KEY,
            json!({"i": {"agentId": agent_id, "name": "stolen"}}),
        ),
        (
            "revokeApiKey of another user",
            REVOKE_KEY,
            json!({"id": peer_key_id}),
        ),
    ];

    for (what, query, vars) in &attempts {
        let as_user = app.gql_as(Some(&key), query, vars.clone()).await;
        let as_agent = app.gql_as(Some(&agent_key), query, vars.clone()).await;
        // Revoking someone else's key answers as for a key that does not exist: a different
        // code would tell a caller which ids are real keys (DESIGN §6).
        let expected = if what.starts_with("revokeApiKey") {
            "NOT_FOUND"
        } else {
            "FORBIDDEN"
        };

        assert_eq!(
            as_user.code(),
            expected,
            "{what} as a user: {}",
            as_user.body
        );
        assert_eq!(
            as_agent.code(),
            expected,
            "{what} as an agent: {}",
            as_agent.body
        );
    }
    let peer_still_in = app
        .gql_as(
            Some(peer_key.data()["createApiKey"]["key"].as_str().unwrap()),
            VIEWER,
            json!({}),
        )
        .await;
    assert_eq!(peer_still_in.status, 200, "the peer's key was not revoked");
}

#[tokio::test]
async fn a_user_may_create_and_revoke_keys_for_themselves() {
    let app = TestApp::spawn().await;
    let (user_id, key) = app.user("self-service", false).await;

    let created = app
        .gql_as(
            Some(&key),
            CREATE_KEY,
            json!({"i": {"userId": user_id, "name": "laptop"}}),
        )
        .await;
    let new_key = created.data()["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let new_key_id = created.data()["createApiKey"]["apiKey"]["id"].clone();
    let works = app.gql_as(Some(&new_key), VIEWER, json!({})).await;
    let revoked = app
        .gql_as(Some(&key), REVOKE_KEY, json!({"id": new_key_id}))
        .await;
    let refused = app.gql_as(Some(&new_key), VIEWER, json!({})).await;

    assert_eq!(works.data()["viewer"]["principal"]["id"], user_id.as_str());
    assert_eq!(revoked.data()["revokeApiKey"], new_key_id);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.code(), "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_new_api_key_is_shown_once_with_its_public_part_and_works() {
    let app = TestApp::spawn().await;
    let (user_id, _) = app.user("keyholder", false).await;

    let r = app
        .gql(CREATE_KEY, json!({"i": {"userId": user_id, "name": "ci"}}))
        .await;

    let secret = &r.data()["createApiKey"];
    let key = secret["key"].as_str().unwrap();
    let api_key = &secret["apiKey"];
    assert!(uuid::Uuid::parse_str(api_key["id"].as_str().unwrap()).is_ok());
    assert_eq!(api_key["name"], "ci");
    let prefix = api_key["prefix"].as_str().unwrap();
    assert!(!prefix.is_empty() && prefix.len() < key.len(), "{secret}");
    assert!(
        key.starts_with(prefix),
        "the prefix recognises the key: {secret}"
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(api_key["createdAt"].as_str().unwrap()).is_ok(),
        "{secret}"
    );
    assert!(api_key["revokedAt"].is_null());
    let viewer = app.gql_as(Some(key), VIEWER, json!({})).await;
    assert_eq!(viewer.data()["viewer"]["principal"]["id"], user_id.as_str());
}

#[tokio::test]
async fn create_api_key_needs_exactly_one_of_user_and_agent() {
    let app = TestApp::spawn().await;
    let (user_id, _) = app.user("holder", false).await;
    let (agent_id, _) = app.agent("holder-bot").await;

    let both = app
        .gql(
            CREATE_KEY,
            json!({"i": {"userId": user_id, "agentId": agent_id, "name": "k"}}),
        )
        .await;
    let neither = app.gql(CREATE_KEY, json!({"i": {"name": "k"}})).await;

    for r in [both, neither] {
        assert_eq!(r.code(), "VALIDATION_ERROR", "{}", r.body);
        assert!(!r.field().is_empty());
    }
}

#[tokio::test]
async fn duplicate_emails_role_names_department_names_and_agent_handles_already_exist() {
    let app = TestApp::spawn().await;
    let user = json!({"n": "One", "e": "same@example.com", "a": false});
    app.gql(CREATE_USER, user.clone()).await.data();
    app.gql(CREATE_ROLE, json!({"n": "editor"})).await.data();
    app.gql(CREATE_DEPARTMENT, json!({"n": "Sales"}))
        .await
        .data();
    app.gql(CREATE_AGENT, json!({"h": "bot", "n": "Bot"}))
        .await
        .data();

    let dup_user = app
        .gql(
            CREATE_USER,
            json!({"n": "Two", "e": "same@example.com", "a": false}),
        )
        .await;
    let dup_role = app.gql(CREATE_ROLE, json!({"n": "editor"})).await;
    let dup_dept = app.gql(CREATE_DEPARTMENT, json!({"n": "Sales"})).await;
    let dup_agent = app
        .gql(CREATE_AGENT, json!({"h": "bot", "n": "Other bot"}))
        .await;

    assert_eq!(dup_user.code(), "ALREADY_EXISTS");
    assert_eq!(dup_role.code(), "ALREADY_EXISTS");
    assert_eq!(dup_dept.code(), "ALREADY_EXISTS");
    assert_eq!(dup_agent.code(), "ALREADY_EXISTS");
}

#[tokio::test]
async fn names_emails_and_agent_handles_are_validated_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "blank user name",
            CREATE_USER,
            json!({"n": "   ", "e": "a@example.com", "a": false}),
            "name",
        ),
        (
            "user name of 256 characters",
            CREATE_USER,
            json!({"n": "x".repeat(256), "e": "b@example.com", "a": false}),
            "name",
        ),
        (
            "email without @",
            CREATE_USER,
            json!({"n": "x", "e": "not-an-email", "a": false}),
            "email",
        ),
        (
            "email with two @",
            CREATE_USER,
            json!({"n": "x", "e": "a@b@example.com", "a": false}),
            "email",
        ),
        (
            "email with a space",
            CREATE_USER,
            json!({"n": "x", "e": "a b@example.com", "a": false}),
            "email",
        ),
        ("blank role name", CREATE_ROLE, json!({"n": ""}), "name"),
        (
            "blank department name",
            CREATE_DEPARTMENT,
            json!({"n": " "}),
            "name",
        ),
        (
            "agent handle with a space",
            CREATE_AGENT,
            json!({"h": "has space", "n": "a"}),
            "handle",
        ),
        (
            "agent handle starting with '-'",
            CREATE_AGENT,
            json!({"h": "-bot", "n": "a"}),
            "handle",
        ),
        (
            "agent handle of 64 characters",
            CREATE_AGENT,
            json!({"h": "b".repeat(64), "n": "a"}),
            "handle",
        ),
        (
            "blank agent handle",
            CREATE_AGENT,
            json!({"h": "", "n": "a"}),
            "handle",
        ),
        (
            "blank agent name",
            CREATE_AGENT,
            json!({"h": "ok", "n": "  "}),
            "name",
        ),
    ];

    for (what, query, vars, field) in cases {
        let r = app.gql(query, vars).await;

        assert_eq!(r.code(), "VALIDATION_ERROR", "{what}: {}", r.body);
        assert_eq!(r.field(), field, "{what}");
    }
}

#[tokio::test]
async fn an_admin_of_another_organization_cannot_assign_roles_to_users_of_this_one() {
    let app = TestApp::spawn().await;
    let (user_id, user_key) = app.user("local", false).await;
    let role = id_of(
        &app.gql(CREATE_ROLE, json!({"n": "local-role"})).await,
        "createRole",
    );
    let dept = id_of(
        &app.gql(CREATE_DEPARTMENT, json!({"n": "local-dept"})).await,
        "createDepartment",
    );
    let acme = app.other_org("acme").await;
    let acme_role = id_of(
        &app.gql_as(Some(&acme), CREATE_ROLE, json!({"n": "acme-role"}))
            .await,
        "createRole",
    );
    let (acme_user, _) = app.user_in(&acme, "acme-user", false).await;

    let their_role_to_our_user = app
        .gql_as(
            Some(&acme),
            ASSIGN_ROLE,
            json!({"u": user_id, "r": acme_role}),
        )
        .await;
    let our_role_to_our_user = app
        .gql_as(Some(&acme), ASSIGN_ROLE, json!({"u": user_id, "r": role}))
        .await;
    let our_role_to_their_user = app
        .gql_as(Some(&acme), ASSIGN_ROLE, json!({"u": acme_user, "r": role}))
        .await;
    let our_dept_to_our_user = app
        .gql_as(
            Some(&acme),
            ASSIGN_DEPARTMENT,
            json!({"u": user_id, "d": dept}),
        )
        .await;
    let key_for_our_user = app
        .gql_as(
            Some(&acme),
            CREATE_KEY,
            json!({"i": {"userId": user_id, "name": "sneaky"}}),
        )
        .await;

    assert_eq!(their_role_to_our_user.code(), "NOT_FOUND");
    assert_eq!(our_role_to_our_user.code(), "NOT_FOUND");
    assert_eq!(our_role_to_their_user.code(), "NOT_FOUND");
    assert_eq!(our_dept_to_our_user.code(), "NOT_FOUND");
    assert_eq!(key_for_our_user.code(), "NOT_FOUND");
    let viewer = app.gql_as(Some(&user_key), VIEWER, json!({})).await;
    assert_eq!(viewer.data()["viewer"]["roles"], json!([]));
    assert_eq!(viewer.data()["viewer"]["departments"], json!([]));
}

#[tokio::test]
async fn the_admin_of_another_organization_sees_its_own_organization() {
    let app = TestApp::spawn().await;
    let acme = app.other_org("acme").await;

    let r = app.gql_as(Some(&acme), VIEWER, json!({})).await;

    let v = &r.data()["viewer"];
    assert_eq!(v["organization"]["handle"], "acme");
    assert_eq!(v["principal"]["__typename"], "User");
    assert_eq!(v["principal"]["isAdmin"], true);
}
