//! `TestApp`: the real server on port 0 with its own database, plus typed GraphQL helpers.
#![allow(dead_code)]

use std::sync::atomic::Ordering;

use memspace::Config;
use serde_json::{json, Value};

pub struct TestApp {
    pub url: String,
    pub admin_key: String,
    pub client: reqwest::Client,
    pub db: memspace::db::Db,
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
        tokio::spawn(async move {
            axum::serve(listener, router).await.ok();
        });
        TestApp {
            url: format!("http://{addr}"),
            admin_key,
            client: reqwest::Client::new(),
            db: app.db,
            _dir: dir,
        }
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
        r.data()["createApiKey"]["key"].as_str().unwrap().to_string()
    }

    /// Creates another organization (as the CLI does) and returns its admin key.
    pub async fn other_org(&self, handle: &str) -> String {
        memspace::directory::service::create_organization(&self.db.write, handle, handle)
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
