//! Property: for random organizations, users, roles, departments, agents, spaces and grants, the
//! `spaces` list of every principal, walked over all its pages, is exactly the set of spaces that
//! `access::permission` lets it VIEW — the SQL visibility condition and the Rust policy agree.
use std::collections::{BTreeMap, BTreeSet};

use memspace::access::{self, Permission};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sea_orm::EntityTrait;
use serde_json::json;

use crate::common::TestApp;

#[derive(Clone, Debug)]
struct UserSpec {
    admin: bool,
    /// Bit i: holds role i (of the org's roles, modulo their number).
    roles: u8,
    departments: u8,
}

#[derive(Clone, Debug)]
struct OrgSpec {
    /// Besides the org's first admin.
    users: Vec<UserSpec>,
    roles: usize,
    departments: usize,
    agents: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    User,
    Role,
    Department,
    Agent,
    Tenant,
    AllUsers,
}

#[derive(Clone, Debug)]
struct GrantSpec {
    kind: Kind,
    /// Which subject of that kind (in the space's org; for TENANT, among the other orgs).
    target: Index,
    edit: bool,
}

#[derive(Clone, Debug)]
struct SpaceSpec {
    org: Index,
    /// Among the org's users (admin included) and agents.
    owner: Index,
    mode: &'static str,
    grants: Vec<GrantSpec>,
    /// A space token for it: `Some(true)` EDIT, `Some(false)` VIEW.
    token: Option<bool>,
    assigned_agent: Option<Index>,
}

#[derive(Clone, Debug)]
pub(crate) struct WorldSpec {
    orgs: Vec<OrgSpec>,
    spaces: Vec<SpaceSpec>,
}

pub(crate) fn world_spec() -> impl Strategy<Value = WorldSpec> {
    let user = (prop::bool::weighted(0.15), any::<u8>(), any::<u8>()).prop_map(
        |(admin, roles, departments)| UserSpec {
            admin,
            roles,
            departments,
        },
    );
    let org = (
        prop::collection::vec(user, 0..=3),
        1..=2usize,
        1..=2usize,
        0..=2usize,
    )
        .prop_map(|(users, roles, departments, agents)| OrgSpec {
            users,
            roles,
            departments,
            agents,
        });
    let kind = prop_oneof![
        Just(Kind::User),
        Just(Kind::Role),
        Just(Kind::Department),
        Just(Kind::Agent),
        Just(Kind::Tenant),
        Just(Kind::AllUsers),
    ];
    let grant = (kind, any::<Index>(), any::<bool>()).prop_map(|(kind, target, edit)| GrantSpec {
        kind,
        target,
        edit,
    });
    let mode = prop_oneof![
        4 => Just("PRIVATE"),
        1 => Just("ORGANIZATION"),
        1 => Just("PUBLIC"),
    ];
    let space = (
        any::<Index>(),
        any::<Index>(),
        mode,
        prop::collection::vec(grant, 0..=4),
        prop::option::weighted(0.25, any::<bool>()),
        prop::option::weighted(0.25, any::<Index>()),
    )
        .prop_map(
            |(org, owner, mode, grants, token, assigned_agent)| SpaceSpec {
                org,
                owner,
                mode,
                grants,
                token,
                assigned_agent,
            },
        );
    (
        prop::collection::vec(org, 2..=3),
        prop::collection::vec(space, 2..=8),
    )
        .prop_map(|(orgs, spaces)| WorldSpec { orgs, spaces })
}

/// One organization as built through the API.
#[derive(Default)]
pub(crate) struct Org {
    pub(crate) id: String,
    pub(crate) admin_key: String,
    /// The admin first, then the other users.
    users: Vec<String>,
    roles: Vec<String>,
    departments: Vec<String>,
    agents: Vec<String>,
}

/// Builds the world through GraphQL; returns the organizations and every principal's key.
pub(crate) async fn build(app: &TestApp, spec: &WorldSpec) -> (Vec<Org>, Vec<String>) {
    let mut orgs = Vec::new();
    let mut keys = Vec::new();
    for (i, o) in spec.orgs.iter().enumerate() {
        let admin_key = if i == 0 {
            app.admin_key.clone()
        } else {
            app.other_org(&format!("org{i}")).await
        };
        let me = app
            .gql_as(
                Some(&admin_key),
                "{ viewer{ principal{ ... on User{ id } } organization{ id } } }",
                json!({}),
            )
            .await;
        let viewer = &me.data()["viewer"];
        let mut org = Org {
            id: viewer["organization"]["id"].as_str().unwrap().to_string(),
            users: vec![viewer["principal"]["id"].as_str().unwrap().to_string()],
            admin_key: admin_key.clone(),
            ..Org::default()
        };
        keys.push(admin_key.clone());
        for r in 0..o.roles {
            org.roles
                .push(app.role_in(&admin_key, &format!("role{r}")).await);
        }
        for d in 0..o.departments {
            org.departments
                .push(app.department_in(&admin_key, &format!("dept{d}")).await);
        }
        for (u, user) in o.users.iter().enumerate() {
            let (id, key) = app
                .user_in(&admin_key, &format!("user{u}"), user.admin)
                .await;
            for (r, role) in org.roles.iter().enumerate() {
                if user.roles & (1 << r) != 0 {
                    app.assign_role_as(&admin_key, &id, role).await;
                }
            }
            for (d, dept) in org.departments.iter().enumerate() {
                if user.departments & (1 << d) != 0 {
                    app.assign_department_as(&admin_key, &id, dept).await;
                }
            }
            org.users.push(id);
            keys.push(key);
        }
        for a in 0..o.agents {
            let (id, key) = app.agent_in(&admin_key, &format!("agent{a}")).await;
            org.agents.push(id);
            keys.push(key);
        }
        orgs.push(org);
    }

    for (s, space) in spec.spaces.iter().enumerate() {
        let oi = space.org.index(orgs.len());
        let org = &orgs[oi];
        let owners: Vec<&String> = org.users.iter().chain(org.agents.iter()).collect();
        let owner = owners[space.owner.index(owners.len())];
        let mut grants = Vec::new();
        for g in &space.grants {
            let pick =
                |ids: &[String]| (!ids.is_empty()).then(|| ids[g.target.index(ids.len())].clone());
            let others: Vec<String> = orgs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != oi)
                .map(|(_, o)| o.id.clone())
                .collect();
            let (kind, subject) = match g.kind {
                Kind::User => ("USER", pick(&org.users)),
                Kind::Role => ("ROLE", pick(&org.roles)),
                Kind::Department => ("DEPARTMENT", pick(&org.departments)),
                Kind::Agent => ("AGENT", pick(&org.agents)),
                Kind::Tenant => ("TENANT", pick(&others)),
                Kind::AllUsers => ("ALL_USERS", Some(String::new())),
            };
            let Some(subject) = subject else { continue };
            let permission = if g.edit { "EDIT" } else { "VIEW" };
            grants.push(if kind == "ALL_USERS" {
                json!({ "subjectKind": kind, "permission": permission })
            } else {
                json!({ "subjectKind": kind, "subjectId": subject, "permission": permission })
            });
        }
        let id = app
            .space_as(
                &org.admin_key,
                &format!("s{s}"),
                json!({ "ownerId": owner, "accessMode": space.mode, "grants": grants }),
            )
            .await;
        if let Some(a) = space.assigned_agent.filter(|_| !org.agents.is_empty()) {
            let agent = &org.agents[a.index(org.agents.len())];
            app.gql_as(
                Some(&org.admin_key),
                "mutation($s:ID!,$a:ID){ assignAgent(spaceId:$s,agentId:$a){ id } }",
                json!({ "s": id, "a": agent }),
            )
            .await
            .data();
        }
        if let Some(edit) = space.token {
            let permission = if edit { "EDIT" } else { "VIEW" };
            let (_, token) = app
                .space_token_as(&org.admin_key, &id, permission, None)
                .await;
            keys.push(token);
        }
    }
    (orgs, keys)
}

/// Walks `spaces(first: 3)` over every page as `key`: (id → viewerPermission, totalCounts seen).
async fn walk(
    app: &TestApp,
    key: &str,
    max_pages: usize,
) -> Result<(Vec<(String, String)>, BTreeSet<i64>), String> {
    let mut seen = Vec::new();
    let mut totals = BTreeSet::new();
    let mut after: Option<String> = None;
    for _ in 0..max_pages {
        let r = app
            .gql_as(
                Some(key),
                "query($a:String){ spaces(first:3, after:$a){ totalCount \
                   pageInfo{ hasNextPage endCursor } edges{ node{ id viewerPermission } } } }",
                json!({ "a": after }),
            )
            .await;
        if !r.codes().is_empty() {
            return Err(format!("spaces failed: {}", r.body));
        }
        let conn = &r.body["data"]["spaces"];
        totals.insert(conn["totalCount"].as_i64().unwrap_or(-1));
        for e in conn["edges"].as_array().into_iter().flatten() {
            let node = &e["node"];
            seen.push((
                node["id"].as_str().unwrap_or("").to_string(),
                node["viewerPermission"].as_str().unwrap_or("").to_string(),
            ));
        }
        if conn["pageInfo"]["hasNextPage"] != json!(true) {
            return Ok((seen, totals));
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(String::from);
    }
    Err(format!("still hasNextPage after {max_pages} pages"))
}

async fn check(spec: WorldSpec) -> Result<(), String> {
    let app = TestApp::spawn().await;
    let (_, keys) = build(&app, &spec).await;
    let spaces = entity::space::Entity::find()
        .all(&app.db.read)
        .await
        .map_err(|e| e.to_string())?;
    let grants = entity::space_grant::Entity::find()
        .all(&app.db.read)
        .await
        .map_err(|e| e.to_string())?;

    let mut failures = Vec::new();
    for key in &keys {
        let principal = memspace::auth::authenticate(&app.db.read, key)
            .await
            .map_err(|e| format!("authenticate: {e:?}"))?;
        let expected: BTreeMap<String, &str> = spaces
            .iter()
            .filter(|s| s.deleted_at.is_none())
            .filter_map(|s| {
                let p = access::permission(&principal, s, &grants);
                (p >= Permission::View).then(|| (s.id.to_string(), p.as_str()))
            })
            .collect();
        let who = format!("{:?} {}", principal.kind, principal.id);
        let (seen, totals) = match walk(&app, key, expected.len() / 3 + 3).await {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{who}: {e}"));
                continue;
            }
        };
        let listed: BTreeMap<String, &str> = seen
            .iter()
            .map(|(id, p)| (id.clone(), p.as_str()))
            .collect();
        if listed.len() != seen.len() {
            failures.push(format!("{who}: a space is listed twice: {seen:?}"));
        }
        if listed != expected {
            failures.push(format!(
                "{who}: listed {listed:?}, but the policy says {expected:?}"
            ));
        }
        if totals != BTreeSet::from([expected.len() as i64]) {
            failures.push(format!(
                "{who}: totalCount {totals:?}, but {} spaces are visible",
                expected.len()
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

#[test]
fn every_principal_lists_exactly_the_spaces_the_policy_lets_it_view() {
    let mut runner = TestRunner::new(Config {
        // PROPTEST_CASES=200 for a deeper local run.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(16),
        max_shrink_iters: 32,
        max_shrink_time: 60_000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&world_spec(), |spec| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(check(spec)).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
