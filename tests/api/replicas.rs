//! Scale-out (DESIGN §8): two processes of the real binary on one PostgreSQL database. What
//! replica A writes, replica B delivers to its subscribers (LISTEN/NOTIFY) and finds in its
//! searches (versioned vector catch-up); a key revoked on A is refused by B; B survives losing
//! its LISTEN connection (not ready meanwhile). PostgreSQL only: skipped without
//! `TEST_DATABASE_URL`.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::GqlResponse;
use crate::realtime::{await_live, gql_at, Item, Writer, Ws};

/// One `memspace serve` child process; killed when dropped (also when a test panics, then
/// its log is printed).
pub(crate) struct Server {
    child: Child,
    pub url: String,
    pub name: String,
    log: PathBuf,
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Server {
    /// Starts `memspace serve` on a free port against `database_url` with `MEMSPACE_ADMIN_KEY`
    /// = `admin_key` (and `PGAPPNAME` = `name`, which PostgreSQL shows as the
    /// `application_name` of its connections), and waits until `/readyz` answers 200.
    pub(crate) async fn start(
        name: &str,
        database_url: &str,
        admin_key: &str,
        log_dir: &Path,
        extra_env: &[(&str, &str)],
    ) -> Server {
        let port = free_port();
        let log = log_dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_memspace"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .args(["--database-url", database_url])
            .env("MEMSPACE_ADMIN_KEY", admin_key)
            .env("PGAPPNAME", name)
            .env("MEMSPACE_LOG", "info")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn memspace serve");
        let mut server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            name: name.to_string(),
            log,
        };
        server.wait_ready(Duration::from_secs(60)).await;
        server
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self, within: Duration) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if readyz(&client, &self.url).await == Some(200) {
                return;
            }
            assert!(
                started.elapsed() < within,
                "{} not ready after {within:?}:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- log of {} ----\n{}", self.name, self.log_tail());
        }
    }
}

/// The status of `GET /readyz`, or None when the server does not answer.
pub(crate) async fn readyz(client: &reqwest::Client, url: &str) -> Option<u16> {
    client
        .get(format!("{url}/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// `base` with a fresh schema as its search path (like `common.rs` does for `TestApp`).
pub(crate) async fn fresh_pg_schema(base: &str) -> String {
    use sea_orm::ConnectionTrait;
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let conn = sea_orm::Database::connect(base)
        .await
        .expect("connect to TEST_DATABASE_URL");
    conn.execute_unprepared(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create schema");
    conn.close().await.ok();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// Two replicas of one fresh database, A started (and ready) before B.
struct Pair {
    a: Server,
    b: Server,
    admin_key: String,
    base: String,
    client: reqwest::Client,
    _logs: tempfile::TempDir,
}

impl Pair {
    /// None (after saying so) when `TEST_DATABASE_URL` is not set.
    async fn start() -> Option<Pair> {
        let base = match std::env::var("TEST_DATABASE_URL") {
            Ok(base) if !base.is_empty() => base,
            _ => {
                eprintln!("replicas: TEST_DATABASE_URL is not set; skipping (PostgreSQL only)");
                return None;
            }
        };
        let url = fresh_pg_schema(&base).await;
        let admin_key = format!("replica-admin-key-{}", uuid::Uuid::now_v7().simple());
        let logs = tempfile::tempdir().expect("log dir");
        let tag = uuid::Uuid::now_v7().simple().to_string();
        let a = Server::start(
            &format!("memspace-a-{tag}"),
            &url,
            &admin_key,
            logs.path(),
            &[],
        )
        .await;
        let b = Server::start(
            &format!("memspace-b-{tag}"),
            &url,
            &admin_key,
            logs.path(),
            &[],
        )
        .await;
        Some(Pair {
            a,
            b,
            admin_key,
            base,
            client: reqwest::Client::new(),
            _logs: logs,
        })
    }

    async fn gql(&self, on: &Server, key: &str, query: &str, variables: Value) -> GqlResponse {
        gql_at(&self.client, &on.url, key, query, variables).await
    }

    /// A space created on A by the admin.
    async fn space(&self) -> String {
        let r = self
            .gql(
                &self.a,
                &self.admin_key,
                "mutation($n:String!){ createSpace(input:{name:$n}){ id } }",
                json!({ "n": format!("replicated-{}", uuid::Uuid::now_v7()) }),
            )
            .await;
        r.data()["createSpace"]["id"].as_str().unwrap().to_string()
    }

    /// The memory ids `searchMemories` on `on` returns for `query` in `mode`.
    async fn search(&self, on: &Server, space: &str, mode: &str, query: &str) -> Vec<String> {
        let r = self
            .gql(
                on,
                &self.admin_key,
                "query($i:SearchInput!){ searchMemories(input:$i){ memory{ id } } }",
                json!({ "i": { "query": query, "mode": mode, "spaceIds": [space], "limit": 100 } }),
            )
            .await;
        r.data()["searchMemories"]
            .as_array()
            .unwrap_or_else(|| panic!("no searchMemories: {}", r.body))
            .iter()
            .map(|h| h["memory"]["id"].as_str().unwrap().to_string())
            .collect()
    }
}

#[tokio::test]
async fn a_write_on_replica_a_reaches_subscribers_and_searches_of_replica_b() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let space = pair.space().await;
    let on_a = Writer::new(&pair.a.url, &pair.admin_key, &space);

    // B loads the space's vectors before A writes more (so B must catch up, not load afresh).
    let first = on_a.create("an orange lantern over the harbour").await;
    let hits = pair
        .search(&pair.b, &space, "SEMANTIC", "orange lantern harbour")
        .await;
    assert_eq!(hits.first(), Some(&first), "B's first search");

    let mut ws = Ws::bearer(&pair.b.url, &pair.admin_key).await;
    ws.subscribe("b", &space).await;
    await_live(&mut ws, "b", &on_a).await;

    let rounds = [
        (
            "zeppelin",
            "a silver zeppelin drifting above quiet wheat fields",
        ),
        (
            "marmalade",
            "grandmother keeps bitter marmalade in the cellar",
        ),
        ("xylophone", "the school band bought a brand new xylophone"),
    ];
    for (word, content) in rounds {
        let started = Instant::now();
        let id = on_a.create(content).await;
        let written = started.elapsed();
        // Right after A's mutation returns, no sleep: both search modes on B see it.
        let semantic = pair.search(&pair.b, &space, "SEMANTIC", content).await;
        assert_eq!(
            semantic.first(),
            Some(&id),
            "SEMANTIC search on B right after A wrote {content:?}: {semantic:?}"
        );
        let keyword = pair.search(&pair.b, &space, "KEYWORD", word).await;
        assert_eq!(keyword, std::slice::from_ref(&id), "KEYWORD {word:?} on B");
        // And B's subscriber got it within a second of the write.
        let e = ws.event("b", Duration::from_secs(5)).await;
        let delivered = started.elapsed();
        assert_eq!(e["kind"], "CREATED");
        assert_eq!(e["memoryId"], id.as_str());
        assert_eq!(e["memory"]["content"], content);
        eprintln!("write on A took {written:?}; B's subscriber had it after {delivered:?}");
        assert!(delivered < Duration::from_secs(1), "{delivered:?}");
    }

    // Updates and deletes on A: B's searches and subscriber follow.
    let r = pair
        .gql(
            &pair.a,
            &pair.admin_key,
            "mutation($id:ID!){ updateMemory(id:$id,input:{content:\"a purple kangaroo juggling pinecones\"}){ id } }",
            json!({ "id": first }),
        )
        .await;
    r.data();
    let semantic = pair
        .search(
            &pair.b,
            &space,
            "SEMANTIC",
            "a purple kangaroo juggling pinecones",
        )
        .await;
    assert_eq!(
        semantic.first(),
        Some(&first),
        "SEMANTIC on B after A's update"
    );
    let keyword = pair.search(&pair.b, &space, "KEYWORD", "kangaroo").await;
    assert_eq!(
        keyword,
        std::slice::from_ref(&first),
        "KEYWORD on B after A's update"
    );
    let e = ws.event("b", Duration::from_secs(1)).await;
    assert_eq!(
        (e["kind"].as_str(), e["memoryId"].as_str()),
        (Some("UPDATED"), Some(first.as_str()))
    );

    let r = pair
        .gql(
            &pair.a,
            &pair.admin_key,
            "mutation($id:ID!){ deleteMemory(id:$id) }",
            json!({ "id": first }),
        )
        .await;
    r.data();
    let semantic = pair
        .search(
            &pair.b,
            &space,
            "SEMANTIC",
            "a purple kangaroo juggling pinecones",
        )
        .await;
    assert!(
        !semantic.contains(&first),
        "B still finds a memory A deleted: {semantic:?}"
    );
    let e = ws.event("b", Duration::from_secs(1)).await;
    assert_eq!(
        (e["kind"].as_str(), e["memoryId"].as_str()),
        (Some("DELETED"), Some(first.as_str()))
    );
}

#[tokio::test]
async fn a_key_revoked_on_replica_a_is_refused_by_replica_b_within_a_second() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let email = format!("carol-{}@example.com", uuid::Uuid::now_v7().simple());
    let r = pair
        .gql(
            &pair.a,
            &pair.admin_key,
            "mutation($e:String!){ createUser(input:{name:\"carol\",email:$e,isAdmin:false}){ id } }",
            json!({ "e": email }),
        )
        .await;
    let user = r.data()["createUser"]["id"].as_str().unwrap().to_string();
    let r = pair
        .gql(
            &pair.a,
            &pair.admin_key,
            "mutation($u:ID!){ createApiKey(input:{userId:$u,name:\"replicated\"}){ key apiKey{ id } } }",
            json!({ "u": user }),
        )
        .await;
    let key = r.data()["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let key_id = r.data()["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // A subscriber on B with that key, on a space of its own.
    let r = pair
        .gql(
            &pair.a,
            &key,
            "mutation{ createSpace(input:{name:\"carol's\"}){ id } }",
            json!({}),
        )
        .await;
    let space = r.data()["createSpace"]["id"].as_str().unwrap().to_string();
    let mut ws = Ws::bearer(&pair.b.url, &key).await;
    ws.subscribe("c", &space).await;
    await_live(&mut ws, "c", &Writer::new(&pair.a.url, &key, &space)).await;

    // B has used (and cached) the key.
    for _ in 0..3 {
        let r = pair
            .gql(&pair.b, &key, "{ viewer{ __typename } }", json!({}))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.data();
    }

    let r = pair
        .gql(
            &pair.a,
            &pair.admin_key,
            "mutation($id:ID!){ revokeApiKey(id:$id) }",
            json!({ "id": key_id }),
        )
        .await;
    r.data();
    let revoked = Instant::now();
    let on_a = pair
        .gql(&pair.a, &key, "{ viewer{ __typename } }", json!({}))
        .await;
    assert_eq!(
        on_a.status, 401,
        "A still takes the key it revoked: {}",
        on_a.body
    );
    loop {
        let r = pair
            .gql(&pair.b, &key, "{ viewer{ __typename } }", json!({}))
            .await;
        if r.status == 401 {
            assert_eq!(r.code(), "UNAUTHENTICATED");
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "B still accepts a key revoked on A after {:?}: HTTP {} {}",
            revoked.elapsed(),
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("B refused the revoked key after {:?}", revoked.elapsed());
    // B's subscription with that key ended too.
    let left = Duration::from_secs(1).saturating_sub(revoked.elapsed());
    ws.expect_end("c", "UNAUTHENTICATED", left).await;
}

/// The backends of `application_name` = `name` whose last query was LISTEN.
async fn listeners(db: &sea_orm::DatabaseConnection, name: &str) -> Vec<i32> {
    use sea_orm::{ConnectionTrait, Statement};
    let rows = db
        .query_all(Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND application_name = $1",
            [name.into()],
        ))
        .await
        .expect("pg_stat_activity");
    rows.iter()
        .map(|r| r.try_get::<i32>("", "pid").expect("pid"))
        .collect()
}

#[tokio::test]
async fn a_replica_that_loses_its_listen_connection_is_unready_then_recovers_and_delivers() {
    use sea_orm::{ConnectionTrait, Statement};
    let Some(pair) = Pair::start().await else {
        return;
    };
    let space = pair.space().await;
    let on_a = Writer::new(&pair.a.url, &pair.admin_key, &space);
    let mut old = Ws::bearer(&pair.b.url, &pair.admin_key).await;
    old.subscribe("old", &space).await;
    await_live(&mut old, "old", &on_a).await;

    let db = sea_orm::Database::connect(pair.base.as_str())
        .await
        .expect("connect to TEST_DATABASE_URL");
    let b_listeners = listeners(&db, &pair.b.name).await;
    assert_eq!(
        b_listeners.len(),
        1,
        "B should hold exactly one LISTEN connection"
    );
    let a_listeners = listeners(&db, &pair.a.name).await;
    assert_eq!(
        a_listeners.len(),
        1,
        "A should hold exactly one LISTEN connection"
    );

    // Watch B's /readyz closely while its listener is killed.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let b_url = pair.b.url.clone();
    let watcher = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut seen: Vec<(Duration, Option<u16>)> = Vec::new();
        let started = Instant::now();
        loop {
            let status = readyz(&client, &b_url).await;
            if seen.last().map(|(_, s)| *s) != Some(status) {
                seen.push((started.elapsed(), status));
            }
            if stop_rx.try_recv().is_ok() || started.elapsed() > Duration::from_secs(15) {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let killed = db
        .query_all(Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity \
             WHERE query LIKE 'LISTEN%' AND application_name = $1",
            [pair.b.name.clone().into()],
        ))
        .await
        .expect("pg_terminate_backend");
    assert_eq!(killed.len(), 1);
    let terminated = Instant::now();

    // B comes back: a new LISTEN connection, ready again.
    let client = reqwest::Client::new();
    loop {
        let now = listeners(&db, &pair.b.name).await;
        if now.len() == 1 && now != b_listeners && readyz(&client, &pair.b.url).await == Some(200) {
            break;
        }
        assert!(
            terminated.elapsed() < Duration::from_secs(10),
            "B did not re-establish LISTEN (listeners now {now:?}, before {b_listeners:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = stop_tx.send(());
    let seen = watcher.await.expect("watcher");
    eprintln!(
        "B /readyz transitions: {seen:?}; back after {:?}",
        terminated.elapsed()
    );
    let not_ready = seen.iter().position(|(_, s)| *s == Some(503));
    assert!(not_ready.is_some(), "B never reported not ready: {seen:?}");
    assert!(
        seen[not_ready.unwrap()..]
            .iter()
            .any(|(_, s)| *s == Some(200)),
        "B did not become ready again: {seen:?}"
    );
    assert_eq!(seen.last().map(|(_, s)| *s), Some(Some(200)), "{seen:?}");
    // A was not touched.
    assert_eq!(readyz(&client, &pair.a.url).await, Some(200));
    assert_eq!(
        listeners(&db, &pair.a.name).await,
        a_listeners,
        "A's listener changed"
    );

    // A new subscriber on B gets A's writes again.
    let mut new = Ws::bearer(&pair.b.url, &pair.admin_key).await;
    new.subscribe("new", &space).await;
    await_live(&mut new, "new", &on_a).await;
    let started = Instant::now();
    let marker = on_a.create("after the listener came back").await;
    let e = new.event("new", Duration::from_secs(1)).await;
    assert_eq!(e["memoryId"], marker.as_str());
    eprintln!(
        "new subscriber on B had A's write after {:?}",
        started.elapsed()
    );

    // The existing subscriber survived (access is re-checked on resync) and gets it too,
    // after the probes the new subscriber's set-up wrote.
    loop {
        match old.item("old", Duration::from_secs(2)).await {
            Item::Event(e) if e["memoryId"] == marker.as_str() => break,
            Item::Event(e) => assert!(
                e["memory"]["content"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("probe")),
                "unexpected event on the old subscription: {e}"
            ),
            other => panic!("the existing subscriber on B did not get A's write: {other:?}"),
        }
    }
    db.close().await.ok();
}
