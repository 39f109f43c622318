//! `TestApp`: the real server on port 0 with its own database, plus typed GraphQL helpers.
#![allow(dead_code)]

use std::sync::atomic::Ordering;

use memspace::Config;
use serde_json::{json, Value};

/// Held by the few tests that load the whole machine (the fuzz runs, the 1,000-space pgvector
/// corpus), so two of them never overlap on 2 cores: each asserts timings and answers that a
/// second such load beside it would turn into timeouts that say nothing about the server.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct TestApp {
    pub url: String,
    pub admin_key: String,
    pub client: reqwest::Client,
    pub db: memspace::db::Db,
    /// The server's recorder of search side effects (flush it to see them in the database).
    pub recall: memspace::search::service::Recall,
    /// The server's vector index.
    pub index: std::sync::Arc<memspace::search::vector_index::VectorIndex>,
    /// The database URL it runs on (see `reopen`).
    pub database_url: String,
    _dir: Option<tempfile::TempDir>,
}

/// The outcome of one GraphQL request.
#[derive(Debug, Clone)]
pub struct GqlResponse {
    pub status: u16,
    pub body: Value,
}

impl GqlResponse {
    /// `data`, or panics with the errors.
    pub fn data(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none_or(|e| e.is_null()),
            "unexpected errors (HTTP {}): {}",
            self.status,
            self.body
        );
        &self.body["data"]
    }

    /// The `extensions.code` of every error, in order.
    pub fn codes(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errs| {
                errs.iter()
                    .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The single error code; panics when there is not exactly one error.
    pub fn code(&self) -> String {
        let codes = self.codes();
        assert_eq!(codes.len(), 1, "expected one error, got {}", self.body);
        codes[0].clone()
    }

    pub fn error(&self) -> &Value {
        &self.body["errors"][0]
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        let admin_key = format!("test-admin-key-{}", uuid::Uuid::now_v7().simple());
        let (database_url, dir) = match std::env::var("TEST_DATABASE_URL") {
            Ok(base) if !base.is_empty() => (fresh_pg_schema(&base).await, None),
            _ => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                (url, Some(dir))
            }
        };
        let mut config = Config::new(database_url);
        config.admin_key = Some(admin_key.clone());
        config.db_pool_size = 4;
        let app = memspace::build(&config).await.expect("app builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().unwrap();
        let router = app.router;
        let header_read_timeout = app.limits.header_read_timeout;
        tokio::spawn(memspace::http::serve(
            listener,
            router,
            header_read_timeout,
            std::future::pending(),
        ));
        // On PostgreSQL the event listener connects in the background; until it does, the
        // principal cache is bypassed. Wait, so statement counts do not change mid-test.
        let client = reqwest::Client::new();
        for _ in 0..100 {
            match client.get(format!("http://{addr}/readyz")).send().await {
                Ok(r) if r.status().is_success() => break,
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        TestApp {
            url: format!("http://{addr}"),
            admin_key,
            client: reqwest::Client::new(),
            db: app.db,
            recall: app.recall,
            index: app.index,
            database_url: config.database_url.clone(),
            _dir: dir,
        }
    }

    /// SQL statements that wrote (INSERT, UPDATE, DELETE) so far.
    pub fn writes(&self) -> u64 {
        self.db.writes.load(Ordering::Relaxed)
    }

    /// SQL statements the server has run so far.
    pub fn statements(&self) -> u64 {
        self.db.statements.load(Ordering::Relaxed)
    }

    /// POST /graphql with `Authorization: Bearer <key>` (no header when `key` is None).
    pub async fn gql_as(&self, key: Option<&str>, query: &str, variables: Value) -> GqlResponse {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let body = resp.json().await.expect("JSON body");
        GqlResponse { status, body }
    }

    /// As the bootstrap admin.
    pub async fn gql(&self, query: &str, variables: Value) -> GqlResponse {
        self.gql_as(Some(&self.admin_key.clone()), query, variables)
            .await
    }

    /// Creates a user in the admin's organization and returns (user id, API key).
    pub async fn user(&self, name: &str, is_admin: bool) -> (String, String) {
        let email = format!("{}-{}@example.com", name, uuid::Uuid::now_v7().simple());
        let r = self
            .gql(
                "mutation($n:String!,$e:String!,$a:Boolean!){ createUser(input:{name:$n,email:$e,isAdmin:$a}){ id } }",
                json!({"n": name, "e": email, "a": is_admin}),
            )
            .await;
        let id = r.data()["createUser"]["id"].as_str().unwrap().to_string();
        let key = self.key_for_user(&self.admin_key.clone(), &id).await;
        (id, key)
    }

    /// Creates an API key for a user, as `admin_key`.
    pub async fn key_for_user(&self, admin_key: &str, user_id: &str) -> String {
        let r = self
            .gql_as(
                Some(admin_key),
                "mutation($u:ID!){ createApiKey(input:{userId:$u,name:\"test\"}){ key apiKey{ id } } }",
                json!({"u": user_id}),
            )
            .await;
        r.data()["createApiKey"]["key"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates another organization (as the CLI does) and returns its admin key.
    pub async fn other_org(&self, handle: &str) -> String {
        memspace::directory::create_organization(&self.db, handle, handle)
            .await
            .map_err(|e| e.message())
            .expect("org created")
            .secret
    }

    /// Creates a space as `key` with extra input fields; returns its id.
    pub async fn space_as(&self, key: &str, name: &str, extra: Value) -> String {
        let mut input = json!({ "name": name });
        if let (Some(obj), Some(more)) = (input.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                obj.insert(k.clone(), v.clone());
            }
        }
        let r = self
            .gql_as(
                Some(key),
                "mutation($i:CreateSpaceInput!){ createSpace(input:$i){ id } }",
                json!({ "i": input }),
            )
            .await;
        r.data()["createSpace"]["id"].as_str().unwrap().to_string()
    }
}

/// A fresh PostgreSQL schema per test, so tests run in parallel without seeing each other.
async fn fresh_pg_schema(base: &str) -> String {
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

impl GqlResponse {
    /// The `extensions.field` of the single error; panics when there is not exactly one error.
    pub fn field(&self) -> String {
        self.code();
        self.error()["extensions"]["field"]
            .as_str()
            .unwrap_or_else(|| panic!("error names no field: {}", self.body))
            .to_string()
    }
}

impl TestApp {
    /// Creates a user in the organization of `admin_key` and returns (user id, API key).
    pub async fn user_in(&self, admin_key: &str, name: &str, is_admin: bool) -> (String, String) {
        let email = format!("{}-{}@example.com", name, uuid::Uuid::now_v7().simple());
        let r = self
            .gql_as(
                Some(admin_key),
                "mutation($n:String!,$e:String!,$a:Boolean!){ createUser(input:{name:$n,email:$e,isAdmin:$a}){ id } }",
                json!({"n": name, "e": email, "a": is_admin}),
            )
            .await;
        let id = r.data()["createUser"]["id"].as_str().unwrap().to_string();
        let key = self.key_for_user(admin_key, &id).await;
        (id, key)
    }

    /// Creates an agent in the admin's organization and returns (agent id, API key).
    pub async fn agent(&self, handle: &str) -> (String, String) {
        let r = self
            .gql(
                "mutation($h:String!){ createAgent(input:{handle:$h,name:$h}){ id } }",
                json!({ "h": handle }),
            )
            .await;
        let id = r.data()["createAgent"]["id"].as_str().unwrap().to_string();
        let r = self
            .gql(
                "mutation($a:ID!){ createApiKey(input:{agentId:$a,name:\"test\"}){ key } }",
                json!({ "a": id }),
            )
            .await;
        let key = r.data()["createApiKey"]["key"]
            .as_str()
            .unwrap()
            .to_string();
        (id, key)
    }

    /// Runs `createSpace` as `key` with the whole input given; returns the raw response.
    pub async fn create_space_as(&self, key: &str, input: Value) -> GqlResponse {
        self.gql_as(
            Some(key),
            "mutation($i:CreateSpaceInput!){ createSpace(input:$i){ id name } }",
            json!({ "i": input }),
        )
        .await
    }
}

// Directory and sharing helpers used by the access tests (access_matrix, access_property, sharing).
impl TestApp {
    /// Runs a mutation/query as `key` and returns `data[field]["id"]` (panics on errors).
    async fn id_of(&self, key: &str, query: &str, vars: Value, field: &str) -> String {
        let r = self.gql_as(Some(key), query, vars).await;
        r.data()[field]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no {field}.id in {}", r.body))
            .to_string()
    }

    /// Creates a role in the organization of `admin_key`; returns its id.
    pub async fn role_in(&self, admin_key: &str, name: &str) -> String {
        self.id_of(
            admin_key,
            "mutation($n:String!){ createRole(input:{name:$n}){ id } }",
            json!({ "n": name }),
            "createRole",
        )
        .await
    }

    /// Creates a department in the organization of `admin_key`; returns its id.
    pub async fn department_in(&self, admin_key: &str, name: &str) -> String {
        self.id_of(
            admin_key,
            "mutation($n:String!){ createDepartment(input:{name:$n}){ id } }",
            json!({ "n": name }),
            "createDepartment",
        )
        .await
    }

    /// Gives `user_id` the role, as `admin_key`.
    pub async fn assign_role_as(&self, admin_key: &str, user_id: &str, role_id: &str) {
        self.gql_as(
            Some(admin_key),
            "mutation($u:ID!,$r:ID!){ assignRole(userId:$u,roleId:$r){ id } }",
            json!({ "u": user_id, "r": role_id }),
        )
        .await
        .data();
    }

    /// Puts `user_id` in the department, as `admin_key`.
    pub async fn assign_department_as(&self, admin_key: &str, user_id: &str, department_id: &str) {
        self.gql_as(
            Some(admin_key),
            "mutation($u:ID!,$d:ID!){ assignDepartment(userId:$u,departmentId:$d){ id } }",
            json!({ "u": user_id, "d": department_id }),
        )
        .await
        .data();
    }

    /// Creates an agent in the organization of `admin_key`; returns (agent id, API key).
    pub async fn agent_in(&self, admin_key: &str, handle: &str) -> (String, String) {
        let id = self
            .id_of(
                admin_key,
                "mutation($h:String!){ createAgent(input:{handle:$h,name:$h}){ id } }",
                json!({ "h": handle }),
                "createAgent",
            )
            .await;
        let r = self
            .gql_as(
                Some(admin_key),
                "mutation($a:ID!){ createApiKey(input:{agentId:$a,name:\"test\"}){ key } }",
                json!({ "a": id }),
            )
            .await;
        let key = r.data()["createApiKey"]["key"]
            .as_str()
            .unwrap()
            .to_string();
        (id, key)
    }

    /// The organization id of the caller (a user or agent key).
    pub async fn org_id_of(&self, key: &str) -> String {
        let r = self
            .gql_as(Some(key), "{ viewer{ organization{ id } } }", json!({}))
            .await;
        r.data()["viewer"]["organization"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `shareSpace` as `key`; returns the raw response.
    pub async fn share_as(&self, key: &str, space_id: &str, grants: Value) -> GqlResponse {
        self.gql_as(
            Some(key),
            "mutation($id:ID!,$g:[GrantInput!]!){ shareSpace(id:$id,grants:$g){ id } }",
            json!({ "id": space_id, "g": grants }),
        )
        .await
    }

    /// `createSpaceToken` as `key`; returns (token id, secret). Panics on errors.
    pub async fn space_token_as(
        &self,
        key: &str,
        space_id: &str,
        permission: &str,
        expires_at: Option<String>,
    ) -> (String, String) {
        let r = self
            .gql_as(
                Some(key),
                "mutation($s:ID!,$p:Permission!,$e:DateTime){ \
                   createSpaceToken(spaceId:$s,permission:$p,expiresAt:$e){ token spaceToken{ id } } }",
                json!({ "s": space_id, "p": permission, "e": expires_at }),
            )
            .await;
        let t = &r.data()["createSpaceToken"];
        (
            t["spaceToken"]["id"].as_str().unwrap().to_string(),
            t["token"].as_str().unwrap().to_string(),
        )
    }
}

// Memory and search helpers used by the memories, search and search_property tests.
impl TestApp {
    /// `createMemory` as `key` in `space_id` with `content` plus extra input fields; raw response.
    pub async fn create_memory_as(
        &self,
        key: &str,
        space_id: &str,
        content: &str,
        extra: Value,
    ) -> GqlResponse {
        let mut input = json!({ "spaceId": space_id, "content": content });
        if let (Some(obj), Some(more)) = (input.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                obj.insert(k.clone(), v.clone());
            }
        }
        self.gql_as(
            Some(key),
            "mutation($i:CreateMemoryInput!){ createMemory(input:$i){ id } }",
            json!({ "i": input }),
        )
        .await
    }

    /// Like `create_memory_as`, panicking on errors; returns the memory id.
    pub async fn memory_as(
        &self,
        key: &str,
        space_id: &str,
        content: &str,
        extra: Value,
    ) -> String {
        let r = self.create_memory_as(key, space_id, content, extra).await;
        r.data()["createMemory"]["id"].as_str().unwrap().to_string()
    }

    /// `createMemories` of plain contents as `key`; returns the ids in input order.
    pub async fn memories_as(&self, key: &str, space_id: &str, contents: &[String]) -> Vec<String> {
        let inputs: Vec<Value> = contents.iter().map(|c| json!({ "content": c })).collect();
        let r = self
            .gql_as(
                Some(key),
                "mutation($s:ID!,$i:[MemoryInput!]!){ createMemories(spaceId:$s,inputs:$i){ id } }",
                json!({ "s": space_id, "i": inputs }),
            )
            .await;
        r.data()["createMemories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// `searchMemories(input)` as `key`; hits carry `score chunk memory{ id content recallCount
    /// space{ id } }`.
    pub async fn search_as(&self, key: &str, input: Value) -> GqlResponse {
        self.gql_as(
            Some(key),
            "query($i:SearchInput!){ searchMemories(input:$i){ score chunk \
               memory{ id content recallCount space{ id } } } }",
            json!({ "i": input }),
        )
        .await
    }
}

impl GqlResponse {
    /// The memory ids of a successful `searchMemories`, best first (panics on errors).
    pub fn hit_ids(&self) -> Vec<String> {
        self.data()["searchMemories"]
            .as_array()
            .unwrap_or_else(|| panic!("no searchMemories in {}", self.body))
            .iter()
            .map(|h| h["memory"]["id"].as_str().unwrap().to_string())
            .collect()
    }
}

// Workspace helpers used by the workspaces and access_matrix tests.
impl TestApp {
    /// `createWorkspace(input:{name})` as `key` (the caller becomes its OWNER); returns its id.
    pub async fn workspace_as(&self, key: &str, name: &str) -> String {
        let r = self
            .gql_as(
                Some(key),
                "mutation($n:String!){ createWorkspace(input:{name:$n}){ id } }",
                json!({ "n": name }),
            )
            .await;
        r.data()["createWorkspace"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no createWorkspace.id in {}", r.body))
            .to_string()
    }

    /// `addWorkspaceMember` as `key`; returns the raw response (`{ role user{ id } }`).
    pub async fn add_workspace_member_as(
        &self,
        key: &str,
        workspace_id: &str,
        user_id: &str,
        role: &str,
    ) -> GqlResponse {
        self.gql_as(
            Some(key),
            "mutation($w:ID!,$u:ID!,$r:WorkspaceRole!){ \
               addWorkspaceMember(workspaceId:$w,userId:$u,role:$r){ role user{ id } } }",
            json!({ "w": workspace_id, "u": user_id, "r": role }),
        )
        .await
    }
}

// Servers with non-default limits, used by the hardening tests.
impl TestApp {
    /// Like `spawn`, with the config changed by `configure` before the app is built (small body
    /// limits, query limits, a tiny request timeout, a rate limit, ...).
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        let admin_key = format!("test-admin-key-{}", uuid::Uuid::now_v7().simple());
        let (database_url, dir) = fresh_database().await;
        let mut config = Config::new(database_url);
        config.admin_key = Some(admin_key.clone());
        config.db_pool_size = 4;
        configure(&mut config);
        serve_config(&config, admin_key, dir).await
    }

    /// Two servers on one fresh database with the same admin key: the first with the default
    /// config, the second with the config changed by `configure`. Lets a test arrange data
    /// through normal limits and then act through tight ones.
    pub async fn spawn_pair_with(configure: impl FnOnce(&mut Config)) -> (TestApp, TestApp) {
        let admin_key = format!("test-admin-key-{}", uuid::Uuid::now_v7().simple());
        let (database_url, dir) = fresh_database().await;
        let mut config = Config::new(database_url);
        config.admin_key = Some(admin_key.clone());
        config.db_pool_size = 4;
        let normal = serve_config(&config, admin_key.clone(), dir).await;
        configure(&mut config);
        let limited = serve_config(&config, admin_key, None).await;
        (normal, limited)
    }
}

/// A fresh database URL: a PostgreSQL schema when `TEST_DATABASE_URL` is set, else an SQLite
/// file in a temp dir (returned so it lives as long as the app).
async fn fresh_database() -> (String, Option<tempfile::TempDir>) {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => (fresh_pg_schema(&base).await, None),
        _ => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
            (url, Some(dir))
        }
    }
}

/// Builds the app from `config` and serves it on port 0.
async fn serve_config(
    config: &Config,
    admin_key: String,
    dir: Option<tempfile::TempDir>,
) -> TestApp {
    let app = memspace::build(config).await.expect("app builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let router = app.router;
    let header_read_timeout = app.limits.header_read_timeout;
    tokio::spawn(memspace::http::serve(
        listener,
        router,
        header_read_timeout,
        std::future::pending(),
    ));
    TestApp {
        url: format!("http://{addr}"),
        admin_key,
        client: reqwest::Client::new(),
        db: app.db,
        recall: app.recall,
        index: app.index,
        database_url: config.database_url.clone(),
        _dir: dir,
    }
}

impl TestApp {
    /// A second server on this one's database and admin key, with the config changed by
    /// `configure` (a restart, when the first one is no longer used).
    pub async fn reopen(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = Config::new(self.database_url.clone());
        config.admin_key = Some(self.admin_key.clone());
        config.db_pool_size = 4;
        configure(&mut config);
        serve_config(&config, self.admin_key.clone(), None).await
    }

    /// Waits (up to 10 s) until the server has run no SQL statement for 300 ms (background
    /// work of a loaded machine, such as a migration check or the first sweep, would otherwise
    /// be counted as the statements of the request under test).
    pub async fn settle(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut last = self.statements();
        while std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let now = self.statements();
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// Makes sure the server has `key`'s principal cached, so the next request's statement
    /// count holds only the query's own work (the first request of a key also authenticates).
    pub async fn warm(&self, key: &str) {
        self.gql_as(
            Some(key),
            "{ viewer { __typename } }",
            serde_json::json!({}),
        )
        .await;
    }
}

impl TestApp {
    /// A restart on this one's database with another `MEMSPACE_ADMIN_KEY` (the returned app's
    /// `admin_key` is the new one).
    pub async fn reopen_as(&self, admin_key: &str) -> anyhow::Result<TestApp> {
        let mut config = Config::new(self.database_url.clone());
        config.admin_key = Some(admin_key.to_string());
        config.db_pool_size = 4;
        let app = memspace::build(&config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let header_read_timeout = app.limits.header_read_timeout;
        tokio::spawn(memspace::http::serve(
            listener,
            app.router,
            header_read_timeout,
            std::future::pending(),
        ));
        Ok(TestApp {
            url: format!("http://{addr}"),
            admin_key: admin_key.to_string(),
            client: reqwest::Client::new(),
            db: app.db,
            recall: app.recall,
            index: app.index,
            database_url: config.database_url.clone(),
            _dir: None,
        })
    }
}

/// Reverts the migrations from the one named `name` through the latest (so a test can re-run
/// a data migration on rows it arranged, however many migrations landed after it).
pub async fn migrate_down_through(db: &memspace::db::Db, name: &str) {
    use migration::MigratorTrait;
    let all = migration::Migrator::migrations();
    let at = all
        .iter()
        .position(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no migration {name}"));
    migration::Migrator::down(&db.write, Some((all.len() - at) as u32))
        .await
        .expect("migrations down");
}
