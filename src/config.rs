//! Configuration: command-line flags with `MEMSPACE_*` environment fallbacks.
//! Every default runs with zero set-up (an SQLite file in the working directory).
use std::net::SocketAddr;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://memspace.db?mode=rwc";

/// Where the database is. Shared by every subcommand that opens it.
#[derive(Clone, Debug, clap::Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://FILE?mode=rwc` (embedded default) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "MEMSPACE_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

/// Flags of `memspace serve`.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MEMSPACE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Admin API key to create on first start instead of a random one (16–256 non-whitespace
    /// characters). When set, no secret is printed.
    #[arg(long, env = "MEMSPACE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MEMSPACE_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Connections in the database pool (PostgreSQL; SQLite readers).
    #[arg(long, env = "MEMSPACE_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,
    /// Longest query nesting (fields deep); introspection is exempt.
    #[arg(long, env = "MEMSPACE_MAX_DEPTH", default_value_t = 12)]
    pub max_depth: usize,
    /// Highest query complexity (fields, times `first` of the lists they sit in).
    #[arg(long, env = "MEMSPACE_MAX_COMPLEXITY", default_value_t = 250_000)]
    pub max_complexity: usize,
    /// Most aliased fields in one query.
    #[arg(long, env = "MEMSPACE_MAX_ALIASES", default_value_t = 200)]
    pub max_aliases: usize,
    /// Seconds before a request is cancelled.
    #[arg(long, env = "MEMSPACE_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Requests per second per API key or space token; 0 turns rate limiting off (default).
    #[arg(long, env = "MEMSPACE_RATE_LIMIT_PER_SECOND", default_value_t = 0)]
    pub rate_limit_per_second: u32,
    /// Burst allowed above the rate (default: twice the rate).
    #[arg(long, env = "MEMSPACE_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// Seconds between sweeps that delete expired memories.
    #[arg(long, env = "MEMSPACE_SWEEP_INTERVAL_SECS", default_value_t = 60)]
    pub sweep_interval_secs: u64,
}

/// Everything the app needs to run; built from [`ServeArgs`] by the CLI and directly by tests.
#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    pub admin_key: Option<String>,
    pub max_body_bytes: usize,
    pub db_pool_size: u32,
    pub sweep_interval: std::time::Duration,
    pub query_limits: crate::limits::QueryLimits,
    pub request_timeout: std::time::Duration,
    /// (requests per second, burst) per credential; `None` = off.
    pub rate_limit: Option<(u32, u32)>,
}

impl Config {
    pub fn server_limits(&self) -> crate::server::ServerLimits {
        use std::num::NonZeroU32;
        crate::server::ServerLimits {
            max_body_bytes: self.max_body_bytes,
            request_timeout: self.request_timeout,
            query: self.query_limits,
            rate_limit: self.rate_limit.and_then(|(rate, burst)| {
                Some((NonZeroU32::new(rate)?, NonZeroU32::new(burst.max(rate))?))
            }),
        }
    }

    pub fn new(database_url: impl Into<String>) -> Self {
        Config {
            database_url: database_url.into(),
            admin_key: None,
            max_body_bytes: 2 * 1024 * 1024,
            db_pool_size: 16,
            sweep_interval: std::time::Duration::from_secs(60),
            query_limits: crate::limits::QueryLimits::default(),
            request_timeout: std::time::Duration::from_secs(30),
            rate_limit: None,
        }
    }
}

impl From<&ServeArgs> for Config {
    fn from(args: &ServeArgs) -> Self {
        Config {
            database_url: args.db.database_url.clone(),
            admin_key: args.admin_key.clone(),
            max_body_bytes: args.max_body_bytes,
            db_pool_size: args.db_pool_size,
            sweep_interval: std::time::Duration::from_secs(args.sweep_interval_secs.max(1)),
            query_limits: crate::limits::QueryLimits {
                max_depth: args.max_depth.max(1),
                max_complexity: args.max_complexity.max(1),
                max_aliases: args.max_aliases,
            },
            request_timeout: std::time::Duration::from_secs(args.request_timeout_secs.max(1)),
            rate_limit: (args.rate_limit_per_second > 0).then(|| {
                let rate = args.rate_limit_per_second;
                (
                    rate,
                    args.rate_limit_burst.unwrap_or(rate.saturating_mul(2)),
                )
            }),
        }
    }
}
