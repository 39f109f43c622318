//! What every HTTP and WebSocket handler shares: the schema, the database, limits, metrics,
//! the rate limiter and the parsed-document cache.
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use super::limits::{self, QueryLimits};
use super::metrics::Metrics;
use memspace_domain::db::Db;
use memspace_engine::vector_index::VectorIndex;
use memspace_graphql::schema::AppSchema;

/// Limits of the HTTP layer (all configurable, see `config.rs`).
#[derive(Clone, Debug)]
pub struct ServerLimits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub query: QueryLimits,
    /// Requests per second per credential; `None` = no rate limit.
    pub rate_limit: Option<(NonZeroU32, NonZeroU32)>,
}

#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub db: Db,
    /// The vector index the schema also holds (MCP tools call the domain with it).
    pub index: Arc<VectorIndex>,
    pub limits: Arc<ServerLimits>,
    pub metrics: Arc<Metrics>,
    pub rate_limiter: Option<Arc<DefaultKeyedRateLimiter<Uuid>>>,
    pub documents: Arc<limits::Documents>,
}

impl AppState {
    pub fn new(
        schema: AppSchema,
        db: Db,
        index: Arc<VectorIndex>,
        limits: ServerLimits,
    ) -> AppState {
        let rate_limiter = limits.rate_limit.map(|(per_second, burst)| {
            Arc::new(RateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            ))
        });
        AppState {
            schema,
            db,
            index,
            limits: Arc::new(limits),
            metrics: Arc::new(Metrics::new()),
            rate_limiter,
            documents: Arc::new(limits::Documents::default()),
        }
    }
}
