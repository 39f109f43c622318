//! Memspace: a GraphQL server for shared memory spaces.
//!
//! [`build`] turns a [`Config`] into a ready [`App`] (database open and migrated, first-start
//! bootstrap done, router built); `main.rs` and the tests both use it.
//!
//! The crates below it, in the order they may import each other (DESIGN.md §2):
//! `memspace_core` <- `memspace_engine` <- `memspace_domain` <- `memspace_graphql` <- this crate
//! (CLI configuration, HTTP, WebSocket and MCP transports, import/export). Their modules are
//! re-exported here under the paths the integration tests and tools use.
pub mod config;
pub mod http;
pub mod mcp;
pub mod transfer;

pub use memspace_core::{access, clock, error, glob, page, principal, validate, vocab};
pub use memspace_domain::{
    audit, auth, db, directory, events, membership, memories, spaces, workspaces,
};
pub use memspace_graphql::schema;

/// The engine's modules and the search use case.
pub mod search {
    pub use memspace_domain::search as service;
    #[cfg(feature = "neural")]
    pub use memspace_engine::neural;
    pub use memspace_engine::{
        chunking, embedder, fusion, keyword, keyword_index, neural_embedder, pgvector, registry,
        remote, vector_index,
    };
}

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;

pub use config::Config;
use db::Db;

/// A built application, ready to serve.
pub struct App {
    pub router: Router,
    /// The executable schema (for in-process use: benchmarks, tools).
    pub schema: schema::AppSchema,
    pub db: Db,
    pub index: Arc<search::vector_index::VectorIndex>,
    /// Recall counters and search audit, written off the request path; flush at shutdown.
    pub recall: search::service::Recall,
    /// The admin key generated on first start, to be shown once (None when the database was
    /// already set up or the operator chose the key).
    pub generated_admin_key: Option<String>,
    /// The HTTP limits it serves with (`http::serve` takes the header-read timeout).
    pub limits: http::ServerLimits,
}

pub async fn build(config: &Config) -> anyhow::Result<App> {
    // Refused before the database is touched.
    if let Some(key) = &config.admin_key {
        auth::validate_chosen_key(key)
            .map_err(|why| anyhow::anyhow!("MEMSPACE_ADMIN_KEY {why}"))?;
    }
    let mut db = Db::connect(&config.database_url, config.db_pool_size).await?;
    db.embedders = Arc::new(search::registry::Registry::from_config(&config.embedders).await?);
    for e in db.embedders.available() {
        tracing::info!(embedder = e.name(), kind = ?e.kind(), default = e.name() == db.embedders.default_name(), "embedder available");
    }
    for u in db.embedders.unavailable_all() {
        tracing::info!(embedder = %u.name, reason = %u.reason, "embedder unavailable");
    }
    db.migrate().await?;
    let generated_admin_key = match directory::bootstrap(&db, config.admin_key.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!(e.message()))
        .context("admin key (first-start bootstrap or MEMSPACE_ADMIN_KEY)")?
    {
        directory::Bootstrap::Generated(key) => Some(key),
        directory::Bootstrap::Chosen => {
            tracing::info!("first start: the admin key is MEMSPACE_ADMIN_KEY");
            None
        }
        directory::Bootstrap::Unchanged => None,
        directory::Bootstrap::Rotated { revoked } => {
            tracing::warn!(
                revoked,
                "admin key rotated: MEMSPACE_ADMIN_KEY differs from the stored admin key, so it \
                 replaces it; the previous admin key no longer works"
            );
            None
        }
    };
    if db.bus.is_postgres() {
        events::spawn_listener(db.bus.clone(), config.database_url.clone());
    }
    let dims: Vec<usize> = db
        .embedders
        .available()
        .iter()
        .map(|e| e.dimension())
        .collect();
    let pgvector = search::pgvector::PgVector::start(
        &config.database_url,
        db.read.clone(),
        &config.vector_store,
        &dims,
    )
    .await?;
    let mut index = match &config.data_dir {
        Some(dir) => search::vector_index::VectorIndex::open(dir.clone(), config.vector_exact_max),
        None => search::vector_index::VectorIndex::with_exact_max(config.vector_exact_max),
    };
    index = index.with_ann_ef_search(config.ann_ef_search);
    if let Some(pg) = &pgvector {
        index = index.with_pgvector(pg.clone());
    }
    if config.keyword_engine == config::KeywordEngine::Tantivy {
        let keyword = match &config.data_dir {
            Some(dir) => search::keyword_index::KeywordIndex::open(&dir.join("keyword")),
            None => search::keyword_index::KeywordIndex::in_memory(),
        };
        let keyword = Arc::new(keyword.with_inline_load_max(config.keyword_inline_load_max));
        keyword.spawn_committer(Duration::from_secs(1));
        index = index.with_keyword(keyword);
    }
    let index = Arc::new(index);
    if let Some(pg) = pgvector.filter(|pg| !pg.is_switched()) {
        spawn_pgvector_migration(pg, index.clone());
    }
    spawn_index_invalidation(db.bus.clone(), index.clone());
    spawn_expiry_sweep(db.clone(), index.clone(), config.sweep_interval);
    if config.data_dir.is_some() {
        spawn_index_save(index.clone(), Duration::from_secs(600));
    }
    let recall = search::service::Recall::spawn(db.clone(), config.recall_flush_interval);
    let schema = schema::build(Some((db.clone(), index.clone(), recall.clone())));
    let state = http::AppState::new(
        schema.clone(),
        db.clone(),
        index.clone(),
        recall.clone(),
        config.server_limits(),
    );
    Ok(App {
        router: http::router(state),
        limits: config.server_limits(),
        schema,
        db,
        index,
        recall,
        generated_admin_key,
    })
}

/// Keeps the in-process vector index in step with writes made by other replicas: deleted
/// memories leave it at once; new and changed ones are picked up by the version check at the
/// next search; after a lost LISTEN connection everything is reloaded.
fn spawn_index_invalidation(bus: events::Bus, index: Arc<search::vector_index::VectorIndex>) {
    let mut rx = bus.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(m) => {
                    if matches!(&m.message, events::BusMessage::Resync) {
                        index.forget_all();
                    }
                    if let events::BusMessage::Memory {
                        kind: events::MemoryEventKind::Deleted,
                        memory_id,
                        space_id,
                        origin,
                        ..
                    } = &m.message
                    {
                        if *origin != bus.origin() {
                            index.remove(*space_id, &[*memory_id]).await;
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => index.forget_all(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// Brings an existing PostgreSQL database over to pgvector (backfill, concurrent index
/// builds); once searches run in SQL, the in-process index lets its vectors go.
fn spawn_pgvector_migration(
    pg: Arc<search::pgvector::PgVector>,
    index: Arc<search::vector_index::VectorIndex>,
) {
    tokio::spawn(async move {
        pg.migrate().await;
        index.forget_all();
    });
}

/// Saves the vector index every `interval` (and `main` saves it at shutdown), so a restart
/// after a crash catches up from a recent file instead of loading everything.
fn spawn_index_save(index: Arc<search::vector_index::VectorIndex>, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = index.save().await {
                tracing::warn!(error = %e, "vector index not saved");
            }
        }
    });
}

/// Deletes expired memories every `interval` (they are already hidden from reads).
fn spawn_expiry_sweep(db: Db, index: Arc<search::vector_index::VectorIndex>, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match memories::service::sweep_expired(&db, &index).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "expired memories swept"),
                Err(e) => tracing::warn!(error = ?e, "expiry sweep failed"),
            }
        }
    });
}
