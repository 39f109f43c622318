//! The access property over MCP (a sibling of `access_property`): for random organizations,
//! principals, spaces, grants and tokens, no tool or resource ever hands a principal a space or a
//! memory that `access::permission` does not let it VIEW, and each lists all the ones it does.
use std::collections::BTreeSet;

use memspace::access::{self, Permission};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sea_orm::EntityTrait;
use serde_json::{json, Value};

use super::connect;
use crate::access_property::{build, world_spec, WorldSpec};
use crate::common::TestApp;

fn ids(v: &Value, list: &str, path: &[&str]) -> Vec<String> {
    v[list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            let mut x = item;
            for p in path {
                x = &x[*p];
            }
            x.as_str().unwrap_or_default().to_string()
        })
        .collect()
}

async fn check(spec: WorldSpec) -> Result<(), String> {
    let app = TestApp::spawn().await;
    let (orgs, keys) = build(&app, &spec).await;
    let spaces = entity::space::Entity::find()
        .all(&app.db.read)
        .await
        .map_err(|e| e.to_string())?;
    let grants = entity::space_grant::Entity::find()
        .all(&app.db.read)
        .await
        .map_err(|e| e.to_string())?;
    // One memory per space, written by its organization's admin, all holding one keyword.
    let mut memory_of = Vec::new();
    for s in &spaces {
        let org = orgs
            .iter()
            .find(|o| o.id == s.organization_id.to_string())
            .ok_or("space of an unknown org")?;
        let id = app
            .memory_as(&org.admin_key, &s.id.to_string(), "zebra marker", json!({}))
            .await;
        memory_of.push((s.id.to_string(), id));
    }

    let mut failures = Vec::new();
    for key in &keys {
        let principal = memspace::auth::authenticate(&app.db.read, key)
            .await
            .map_err(|e| format!("authenticate: {e:?}"))?;
        let who = format!("{:?} {}", principal.kind, principal.id);
        let visible: BTreeSet<String> = spaces
            .iter()
            .filter(|s| access::permission(&principal, s, &grants) >= Permission::View)
            .map(|s| s.id.to_string())
            .collect();
        let mcp = connect(&app, key).await;

        let mut listed = BTreeSet::new();
        let mut cursor = Value::Null;
        for _ in 0..10 {
            let page = mcp
                .ok("list_spaces", json!({ "first": 3, "cursor": cursor }))
                .await;
            listed.extend(ids(&page, "spaces", &["id"]));
            cursor = page["next_cursor"].clone();
            if cursor.is_null() {
                break;
            }
        }
        if listed != visible {
            failures.push(format!("{who}: list_spaces {listed:?}, policy {visible:?}"));
        }

        let hits = mcp
            .ok(
                "search_memories",
                json!({ "query": "zebra", "mode": "keyword", "limit": 100 }),
            )
            .await;
        let found: BTreeSet<String> = ids(&hits, "hits", &["memory", "space_id"])
            .into_iter()
            .collect();
        if found != visible {
            failures.push(format!(
                "{who}: search_memories hit spaces {found:?}, policy {visible:?}"
            ));
        }

        let resources: BTreeSet<String> = mcp
            .client
            .list_all_resources()
            .await
            .map_err(|e| format!("resources/list: {e}"))?
            .into_iter()
            .map(|r| r.uri.trim_start_matches("memspace://spaces/").to_string())
            .collect();
        if resources != visible {
            failures.push(format!(
                "{who}: resources {resources:?}, policy {visible:?}"
            ));
        }

        for (space, memory) in &memory_of {
            let readable = visible.contains(space);
            for (tool, args) in [
                ("get_space", json!({ "space_id": space })),
                ("recent_memories", json!({ "space_id": space })),
                ("get_memory", json!({ "memory_id": memory })),
            ] {
                let r = mcp.call(tool, args).await;
                let answered = r.is_error != Some(true);
                if answered != readable {
                    failures.push(format!(
                        "{who}: {tool} on space {space} answered={answered}, policy readable={readable}: {r:?}"
                    ));
                }
                if !answered && super::code_of(&r) != "NOT_FOUND" {
                    failures.push(format!("{who}: {tool} on hidden {space}: {r:?}"));
                }
            }
        }
        mcp.close().await;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

#[test]
fn no_tool_or_resource_returns_what_the_policy_hides() {
    let mut runner = TestRunner::new(Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(6),
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
        rt.block_on(check(spec)).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
