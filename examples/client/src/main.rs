//! A small Memspace client whose request and response types are generated at build time from
//! the server's `schema.graphql` and the operations in `queries/`: an operation that no longer
//! fits the schema breaks this build, not a user at run time.
//!
//! It creates a space, writes a few memories (`createMemories`), searches them (`HYBRID`) and
//! prints the hits. Configuration comes from the environment: `MEMSPACE_URL` (the GraphQL
//! endpoint, default `http://127.0.0.1:8080/graphql`) and `MEMSPACE_KEY` (an API key). Any
//! GraphQL error ends the program with a non-zero status.
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _, Result};
use graphql_client::{GraphQLQuery, Response};
use serde_json::json;

// The schema's custom scalars, as the generated modules expect to find them (`use super::*`).
type DateTime = String;
#[allow(clippy::upper_case_acronyms)] // graphql_client looks the scalar up by its schema name
type JSON = serde_json::Value;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../../schema.graphql",
    query_path = "queries/create_space.graphql",
    response_derives = "Debug"
)]
struct CreateSpace;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../../schema.graphql",
    query_path = "queries/create_memories.graphql",
    response_derives = "Debug",
    skip_serializing_none
)]
struct CreateMemories;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../../schema.graphql",
    query_path = "queries/search_memories.graphql",
    response_derives = "Debug"
)]
struct SearchMemories;

/// The endpoint and key every request uses.
struct Client {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Client {
    fn from_env() -> Result<Client> {
        let url = std::env::var("MEMSPACE_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:8080/graphql".to_string());
        let key = std::env::var("MEMSPACE_KEY").context("set MEMSPACE_KEY to an API key")?;
        Ok(Client {
            http: reqwest::Client::new(),
            url,
            key,
        })
    }

    /// Runs one operation; any GraphQL error becomes an `Err` naming its code.
    async fn run<Q: GraphQLQuery>(&self, variables: Q::Variables) -> Result<Q::ResponseData> {
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key)
            .json(&Q::build_query(variables))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.url))?;
        let status = resp.status();
        let body: Response<Q::ResponseData> = resp
            .json()
            .await
            .with_context(|| format!("HTTP {status}: not a GraphQL response"))?;
        if let Some(errors) = body.errors.filter(|e| !e.is_empty()) {
            let described: Vec<String> = errors
                .iter()
                .map(|e| {
                    let code = e
                        .extensions
                        .as_ref()
                        .and_then(|x| x.get("code"))
                        .and_then(|c| c.as_str())
                        .unwrap_or("?");
                    format!("{} ({code})", e.message)
                })
                .collect();
            return Err(anyhow!("GraphQL error: {}", described.join("; ")));
        }
        body.data
            .ok_or_else(|| anyhow!("HTTP {status}: a response without data"))
    }
}

fn memory(content: &str, tags: &[&str], importance: i64) -> create_memories::MemoryInput {
    create_memories::MemoryInput {
        content: content.to_string(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        metadata: Some(json!({ "source": "client-example" })),
        importance: Some(importance),
        confidence: None,
        agent_id: None,
        thread_id: None,
        expires_at: None,
        external_id: None,
        on_duplicate: None,
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let client = Client::from_env()?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();

    let space = client
        .run::<CreateSpace>(create_space::Variables {
            name: format!("client-example-{stamp}"),
            description: Some("Written by examples/client".to_string()),
        })
        .await?
        .create_space;
    println!("space {} ({})", space.id, space.name);

    let written = client
        .run::<CreateMemories>(create_memories::Variables {
            space_id: space.id.clone(),
            inputs: vec![
                memory(
                    "Deploys to staging run every night from the release branch",
                    &["deploy", "staging"],
                    7,
                ),
                memory(
                    "Production deploys need a second reviewer and a green canary",
                    &["deploy", "production"],
                    9,
                ),
                memory("The team lunch is on Thursdays at noon", &["social"], 2),
            ],
        })
        .await?
        .create_memories;
    println!("wrote {} memories", written.len());

    let hits = client
        .run::<SearchMemories>(search_memories::Variables {
            space_id: space.id,
            query: "how do deploys to staging work".to_string(),
            limit: 5,
        })
        .await?
        .memory_search
        .nodes;
    for (rank, hit) in hits.iter().enumerate() {
        println!(
            "hit {} score={:.4} [{}] {}",
            rank + 1,
            hit.score,
            hit.memory.tags.join(","),
            hit.memory.content
        );
    }
    Ok(())
}
