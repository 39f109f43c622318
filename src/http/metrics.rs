//! Prometheus metrics: requests by operation and outcome, latency, database use, memories.
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};

use memspace_domain::db::Db;

/// Distinct operation names kept as label values; later new names count as `other`.
pub const MAX_OPERATION_NAMES: usize = 200;

pub struct Metrics {
    registry: Registry,
    /// Operation names admitted as label values (at most [`MAX_OPERATION_NAMES`]).
    names: std::sync::Mutex<std::collections::HashSet<String>>,
    requests: IntCounterVec,
    latency: HistogramVec,
    statements: IntGauge,
    pool: IntGaugeVec,
    memories: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry =
            Registry::new_custom(Some("memspace".into()), None).unwrap_or_else(|_| Registry::new());
        let requests = IntCounterVec::new(
            Opts::new(
                "graphql_requests_total",
                "GraphQL requests by operation and outcome",
            ),
            &["operation", "outcome"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "graphql_request_duration_seconds",
                "GraphQL request latency",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["operation"],
        )
        .expect("static metric definition");
        let statements = IntGauge::new("db_statements_total", "SQL statements run by this process")
            .expect("static metric definition");
        let pool = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database pool connections by pool and state",
            ),
            &["pool", "state"],
        )
        .expect("static metric definition");
        let memories = IntGauge::new("memories_stored", "Memories stored (all spaces)")
            .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(statements.clone()),
            Box::new(pool.clone()),
            Box::new(memories.clone()),
        ] {
            let _ = registry.register(c);
        }
        Metrics {
            registry,
            names: Default::default(),
            requests,
            latency,
            statements,
            pool,
            memories,
        }
    }

    /// Records one request. Label values come from a bounded set: a request that did not
    /// authenticate is `unauthenticated` whatever it calls itself, a name that is not a plain
    /// identifier is `other`, and so is every new name once [`MAX_OPERATION_NAMES`] are known.
    /// So no client, with or without a key, can grow the registry without bound.
    pub fn observe(&self, operation: Option<&str>, outcome: &str, seconds: f64) {
        let op = self.label(operation, outcome);
        self.requests.with_label_values(&[&op, outcome]).inc();
        self.latency.with_label_values(&[&op]).observe(seconds);
    }

    fn label(&self, operation: Option<&str>, outcome: &str) -> String {
        if outcome == "UNAUTHENTICATED" {
            return "unauthenticated".into();
        }
        let name = match operation {
            Some(o)
                if !o.is_empty()
                    && o.len() <= 64
                    && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                o
            }
            Some(_) => return "other".into(),
            None => return "anonymous".into(),
        };
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.contains(name) {
            return name.to_string();
        }
        if names.len() < MAX_OPERATION_NAMES {
            names.insert(name.to_string());
            return name.to_string();
        }
        "other".into()
    }

    /// The text exposition, with gauges read at scrape time.
    pub async fn render(&self, db: &Db) -> String {
        self.statements.set(db.statement_count() as i64);
        for (name, conn) in [("read", &db.read), ("write", &db.write)] {
            if let Some((size, idle)) = pool_stats(conn) {
                self.pool.with_label_values(&[name, "open"]).set(size);
                self.pool.with_label_values(&[name, "idle"]).set(idle);
            }
        }
        if let Ok(n) = entity::memory::Entity::find().count(&db.read).await {
            self.memories.set(n as i64);
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn pool_stats(conn: &DatabaseConnection) -> Option<(i64, i64)> {
    match conn {
        DatabaseConnection::SqlxSqlitePoolConnection(_) => {
            let pool = conn.get_sqlite_connection_pool();
            Some((pool.size() as i64, pool.num_idle() as i64))
        }
        DatabaseConnection::SqlxPostgresPoolConnection(_) => {
            let pool = conn.get_postgres_connection_pool();
            Some((pool.size() as i64, pool.num_idle() as i64))
        }
        _ => None,
    }
}
