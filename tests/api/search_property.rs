//! Property: SEARCH NEVER LEAKS. For random organizations, users, roles, agents, spaces (access
//! modes, grants, links, soft deletes) and memories drawn from one small vocabulary (so every
//! query hits many spaces), every hit of every search, in every mode, with or without
//! `spaceIds`, belongs to a live space that `access::permission` lets the caller VIEW. A keyword
//! search for the whole vocabulary also finds *every* memory the caller may read, so the SQL
//! scope and the Rust policy agree in both directions.
use std::collections::{BTreeSet, HashMap};

use memspace::access::{self, Permission};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sea_orm::EntityTrait;
use serde_json::json;

use crate::common::TestApp;

const VOCABULARY: [&str; 8] = [
    "river", "lantern", "copper", "meadow", "falcon", "harbor", "violet", "thunder",
];
const MODES: [&str; 3] = ["KEYWORD", "SEMANTIC", "HYBRID"];

#[derive(Clone, Copy, Debug)]
enum Subject {
    /// A user of the space's organization (admin included).
    User(Index),
    /// The organization's one role.
    Role,
    /// An agent of the space's organization.
    Agent(Index),
    /// The other organization.
    Tenant,
    AllUsers,
}

#[derive(Clone, Debug)]
struct GrantSpec {
    subject: Subject,
    edit: bool,
}

#[derive(Clone, Debug)]
struct SpaceSpec {
    /// In the second organization rather than the first.
    other_org: bool,
    /// Among the org's users (admin first) and agents.
    owner: Index,
    mode: &'static str,
    grants: Vec<GrantSpec>,
    /// Each memory: indices into `VOCABULARY`.
    memories: Vec<Vec<usize>>,
    link_to: Option<Index>,
    deleted: bool,
    /// A VIEW space token for it joins the principals.
    token: bool,
}

#[derive(Clone, Debug)]
struct OrgSpec {
    /// Non-admin users; bit 0 of each: holds the org's role.
    users: Vec<bool>,
    agents: usize,
}

#[derive(Clone, Debug)]
struct WorldSpec {
    orgs: [OrgSpec; 2],
    spaces: Vec<SpaceSpec>,
    /// Per principal and mode: query words and the space to name in `spaceIds`.
    searches: Vec<(Vec<usize>, Index)>,
}

fn world_spec() -> impl Strategy<Value = WorldSpec> {
    let org = (prop::collection::vec(any::<bool>(), 1..=3), 0..=1usize)
        .prop_map(|(users, agents)| OrgSpec { users, agents });
    let subject = prop_oneof![
        3 => any::<Index>().prop_map(Subject::User),
        1 => Just(Subject::Role),
        1 => any::<Index>().prop_map(Subject::Agent),
        2 => Just(Subject::Tenant),
        1 => Just(Subject::AllUsers),
    ];
    let grant = (subject, any::<bool>()).prop_map(|(subject, edit)| GrantSpec { subject, edit });
    let mode = prop_oneof![
        3 => Just("PRIVATE"),
        1 => Just("ORGANIZATION"),
        1 => Just("PUBLIC"),
    ];
    let memory = prop::collection::vec(0..VOCABULARY.len(), 2..=4);
    let space = (
        any::<bool>(),
        any::<Index>(),
        mode,
        prop::collection::vec(grant, 0..=3),
        prop::collection::vec(memory, 1..=3),
        prop::option::weighted(0.4, any::<Index>()),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(other_org, owner, mode, grants, memories, link_to, deleted, token)| SpaceSpec {
                other_org,
                owner,
                mode,
                grants,
                memories,
                link_to,
                deleted,
                token,
            },
        );
    let search = (
        prop::collection::vec(0..VOCABULARY.len(), 1..=3),
        any::<Index>(),
    );
    (
        org.clone(),
        org,
        prop::collection::vec(space, 3..=6),
        prop::collection::vec(search, 48),
    )
        .prop_map(|(a, b, spaces, searches)| WorldSpec {
            orgs: [a, b],
            spaces,
            searches,
        })
}

/// One organization as built through the API.
struct Org {
    id: String,
    admin_key: String,
    /// The admin first.
    users: Vec<String>,
    role: String,
    agents: Vec<String>,
}

/// Builds the world through GraphQL; returns every principal's key and the space ids in spec
/// order.
async fn build(app: &TestApp, spec: &WorldSpec) -> (Vec<String>, Vec<String>) {
    let mut orgs = Vec::new();
    let mut keys = Vec::new();
    for (i, o) in spec.orgs.iter().enumerate() {
        let admin_key = if i == 0 {
            app.admin_key.clone()
        } else {
            app.other_org("elsewhere").await
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
            role: app.role_in(&admin_key, "readers").await,
            admin_key: admin_key.clone(),
            agents: Vec::new(),
        };
        keys.push(admin_key.clone());
        for (u, has_role) in o.users.iter().enumerate() {
            let (id, key) = app.user_in(&admin_key, &format!("user{u}"), false).await;
            if *has_role {
                app.assign_role_as(&admin_key, &id, &org.role).await;
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

    let mut space_ids = Vec::new();
    for (s, space) in spec.spaces.iter().enumerate() {
        let (org, other) = if space.other_org {
            (&orgs[1], &orgs[0])
        } else {
            (&orgs[0], &orgs[1])
        };
        let owners: Vec<&String> = org.users.iter().chain(org.agents.iter()).collect();
        let owner = owners[space.owner.index(owners.len())];
        let mut grants = Vec::new();
        for g in &space.grants {
            let permission = if g.edit { "EDIT" } else { "VIEW" };
            let grant = match g.subject {
                Subject::User(i) => json!({ "subjectKind": "USER",
                    "subjectId": org.users[i.index(org.users.len())] }),
                Subject::Role => json!({ "subjectKind": "ROLE", "subjectId": org.role }),
                Subject::Agent(i) if !org.agents.is_empty() => json!({ "subjectKind": "AGENT",
                    "subjectId": org.agents[i.index(org.agents.len())] }),
                Subject::Agent(_) => continue,
                Subject::Tenant => json!({ "subjectKind": "TENANT", "subjectId": other.id }),
                Subject::AllUsers => json!({ "subjectKind": "ALL_USERS" }),
            };
            let mut grant = grant;
            grant["permission"] = json!(permission);
            grants.push(grant);
        }
        let id = app
            .space_as(
                &org.admin_key,
                &format!("s{s}"),
                json!({ "ownerId": owner, "accessMode": space.mode, "grants": grants }),
            )
            .await;
        let contents: Vec<String> = space
            .memories
            .iter()
            .map(|words| {
                let text: Vec<&str> = words.iter().map(|w| VOCABULARY[*w]).collect();
                format!("{} near space {s}.", text.join(" "))
            })
            .collect();
        app.memories_as(&org.admin_key, &id, &contents).await;
        if space.token {
            let (_, token) = app.space_token_as(&org.admin_key, &id, "VIEW", None).await;
            keys.push(token);
        }
        space_ids.push(id);
    }

    // Links are made by the source's org admin; one to a space it cannot see simply fails.
    for (s, space) in spec.spaces.iter().enumerate() {
        if let Some(target) = space.link_to {
            let admin = &orgs[usize::from(space.other_org)].admin_key;
            app.gql_as(
                Some(admin),
                "mutation($a:ID!,$b:ID!){ linkSpace(id:$a,linkedSpaceId:$b){ id } }",
                json!({ "a": space_ids[s], "b": space_ids[target.index(space_ids.len())] }),
            )
            .await;
        }
    }
    for (s, space) in spec.spaces.iter().enumerate() {
        if space.deleted {
            let admin = &orgs[usize::from(space.other_org)].admin_key;
            app.gql_as(
                Some(admin),
                "mutation($id:ID!){ deleteSpace(id:$id){ id } }",
                json!({ "id": space_ids[s] }),
            )
            .await
            .data();
        }
    }
    (keys, space_ids)
}

/// (memory id, space id) of every hit, or the error body.
fn hit_spaces(r: &crate::common::GqlResponse) -> Result<Vec<(String, String)>, String> {
    if !r.codes().is_empty() {
        return Err(r.body.to_string());
    }
    Ok(r.body["data"]["searchMemories"]
        .as_array()
        .ok_or_else(|| r.body.to_string())?
        .iter()
        .map(|h| {
            (
                h["memory"]["id"].as_str().unwrap_or("").to_string(),
                h["memory"]["space"]["id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect())
}

/// `ann`: every semantic search goes through the filtered ANN index (the planner's exact
/// threshold set to 0), so one index query covers all the caller's spaces.
async fn check(spec: WorldSpec, ann: bool) -> Result<(), String> {
    let app = if ann {
        TestApp::spawn_with(|c| c.vector_exact_max = 0).await
    } else {
        TestApp::spawn().await
    };
    let (keys, space_ids) = build(&app, &spec).await;
    let db_err = |e: sea_orm::DbErr| e.to_string();
    let spaces = entity::space::Entity::find()
        .all(&app.db.read)
        .await
        .map_err(db_err)?;
    let grants = entity::space_grant::Entity::find()
        .all(&app.db.read)
        .await
        .map_err(db_err)?;
    let links = entity::space_link::Entity::find()
        .all(&app.db.read)
        .await
        .map_err(db_err)?;
    let memory_space: HashMap<String, String> = entity::memory::Entity::find()
        .all(&app.db.read)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(|m| (m.id.to_string(), m.space_id.to_string()))
        .collect();
    let all_words = VOCABULARY.join(" ");

    let mut failures = Vec::new();
    let mut searches = spec.searches.iter().cycle();
    // (searches, hits, refused spaceIds) — printed so a run shows the property had teeth.
    let mut seen = (0usize, 0usize, 0usize);
    for key in &keys {
        let principal = memspace::auth::authenticate(&app.db.read, key)
            .await
            .map_err(|e| format!("authenticate: {}", e.message()))?;
        let who = format!("{:?} {}", principal.kind, principal.id);
        // Live spaces the policy lets this principal VIEW.
        let readable: BTreeSet<String> = spaces
            .iter()
            .filter(|s| s.deleted_at.is_none())
            .filter(|s| access::permission(&principal, s, &grants) >= Permission::View)
            .map(|s| s.id.to_string())
            .collect();
        let memories_in = |scope: &BTreeSet<String>| -> BTreeSet<String> {
            memory_space
                .iter()
                .filter(|(_, s)| scope.contains(*s))
                .map(|(m, _)| m.clone())
                .collect()
        };

        for mode in MODES {
            let (words, pick) = searches.next().expect("cycle");
            let query: Vec<&str> = words.iter().map(|w| VOCABULARY[*w]).collect();
            let query = query.join(" ");
            let named = &space_ids[pick.index(space_ids.len())];

            // Everywhere.
            let r = app
                .search_as(key, json!({ "query": query, "mode": mode, "limit": 100 }))
                .await;
            seen.0 += 1;
            match hit_spaces(&r) {
                Err(e) => failures.push(format!("{who} {mode} {query:?}: error {e}")),
                Ok(hits) => {
                    seen.1 += hits.len();
                    for (m, s) in hits {
                        if !readable.contains(&s) || memory_space.get(&m) != Some(&s) {
                            failures.push(format!(
                                "{who} {mode} {query:?}: LEAK memory {m} of space {s} \
                                 (stored in {:?}); readable {readable:?}",
                                memory_space.get(&m)
                            ));
                        }
                    }
                }
            }

            // Naming one space: NOT_FOUND unless readable; hits only from it and its readable
            // links.
            let r = app
                .search_as(
                    key,
                    json!({ "query": query, "mode": mode, "limit": 100, "spaceIds": [named] }),
                )
                .await;
            let scope: BTreeSet<String> = std::iter::once(named.clone())
                .chain(
                    links
                        .iter()
                        .filter(|l| l.space_id.to_string() == *named)
                        .map(|l| l.linked_space_id.to_string()),
                )
                .filter(|s| readable.contains(s))
                .collect();
            seen.0 += 1;
            if !readable.contains(named) {
                seen.2 += 1;
                if r.codes() != ["NOT_FOUND"] {
                    failures.push(format!(
                        "{who} {mode}: spaceIds [{named}] is not readable, got {}",
                        r.body
                    ));
                }
                continue;
            }
            match hit_spaces(&r) {
                Err(e) => failures.push(format!("{who} {mode} in {named}: error {e}")),
                Ok(hits) => {
                    seen.1 += hits.len();
                    for (m, s) in hits {
                        if !scope.contains(&s) {
                            failures.push(format!(
                                "{who} {mode} {query:?} in {named}: LEAK memory {m} of space {s}; \
                                 scope {scope:?}"
                            ));
                        }
                    }
                }
            }
        }

        // Completeness: every vocabulary word, KEYWORD, finds every readable memory.
        let r = app
            .search_as(
                key,
                json!({ "query": all_words, "mode": "KEYWORD", "limit": 100 }),
            )
            .await;
        match hit_spaces(&r) {
            Err(e) => failures.push(format!("{who} all words: error {e}")),
            Ok(hits) => {
                let found: BTreeSet<String> = hits.into_iter().map(|(m, _)| m).collect();
                let expected = memories_in(&readable);
                if found != expected {
                    failures.push(format!(
                        "{who}: KEYWORD for every word found {} memories, the policy allows {} \
                         (extra {:?}, missing {:?})",
                        found.len(),
                        expected.len(),
                        found.difference(&expected).collect::<Vec<_>>(),
                        expected.difference(&found).collect::<Vec<_>>()
                    ));
                }
            }
        }
    }
    eprintln!(
        "  {} principals, {} spaces, {} memories: {} searches, {} hits, {} refused spaceIds",
        keys.len(),
        spaces.len(),
        memory_space.len(),
        seen.0,
        seen.1,
        seen.2
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

fn run_cases(cases: u32, ann: bool) {
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 16,
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
        rt.block_on(check(spec, ann)).map_err(TestCaseError::fail)
    });
    eprintln!(
        "search_never_leaks (ann: {ann}): {cases} cases in {:?}",
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn search_never_returns_a_memory_of_a_space_the_caller_cannot_view() {
    run_cases(10, false);
}

#[test]
fn a_filtered_ann_search_never_returns_a_memory_of_a_space_the_caller_cannot_view() {
    run_cases(5, true);
}
