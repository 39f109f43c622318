//! What every HTTP and WebSocket handler shares: the schema, the database, limits, metrics,
//! the rate limiter and the parsed-document cache.
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use super::limits::{self, QueryLimits};
use super::metrics::Metrics;
use memspace_domain::db::Db;
use memspace_engine::vector_index::VectorIndex;
use memspace_graphql::memories::subscription::Rechecks;
use memspace_graphql::schema::AppSchema;

/// Limits of the HTTP layer (all configurable, see `config.rs`).
#[derive(Clone, Debug)]
pub struct ServerLimits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub query: QueryLimits,
    /// Requests per second per credential; `None` = no rate limit.
    pub rate_limit: Option<(NonZeroU32, NonZeroU32)>,
    /// Largest response body (HTTP) or `next` payload (WebSocket), in bytes.
    pub max_response_bytes: usize,
    /// A connection that has not sent its request headers within this is closed.
    pub header_read_timeout: Duration,
    /// A WebSocket without `connection_init` within this is closed with 4408.
    pub ws_init_timeout: Duration,
    /// Subscriptions open at once on one WebSocket.
    pub max_subscriptions_per_connection: usize,
    /// Subscriptions open at once with one credential, over all its sockets.
    pub max_subscriptions_per_key: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            query: QueryLimits::default(),
            rate_limit: None,
            max_response_bytes: 16 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            ws_init_timeout: Duration::from_secs(10),
            max_subscriptions_per_connection: 100,
            max_subscriptions_per_key: 500,
        }
    }
}

/// Subscriptions open per credential, over every socket of this process.
#[derive(Default)]
pub struct SubscriptionCounts(Mutex<HashMap<Uuid, usize>>);

impl SubscriptionCounts {
    /// Counts one more for `key` unless it already holds `max`.
    pub fn acquire(&self, key: Uuid, max: usize) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    pub fn release(&self, key: Uuid) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&key);
            }
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub db: Db,
    /// The vector index the schema also holds (MCP tools call the domain with it).
    pub index: Arc<VectorIndex>,
    /// Recall counters of searches, written off the request path.
    pub recall: memspace_domain::search::Recall,
    pub limits: Arc<ServerLimits>,
    pub metrics: Arc<Metrics>,
    pub rate_limiter: Option<Arc<DefaultKeyedRateLimiter<Uuid>>>,
    pub documents: Arc<limits::Documents>,
    pub subscriptions: Arc<SubscriptionCounts>,
    pub rechecks: Arc<Rechecks>,
}

impl AppState {
    pub fn new(
        schema: AppSchema,
        db: Db,
        index: Arc<VectorIndex>,
        recall: memspace_domain::search::Recall,
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
            recall,
            limits: Arc::new(limits),
            metrics: Arc::new(Metrics::new()),
            rate_limiter,
            documents: Arc::new(limits::Documents::default()),
            subscriptions: Arc::default(),
            rechecks: Arc::default(),
        }
    }
}
