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
}

impl Config {
    pub fn new(database_url: impl Into<String>) -> Self {
        Config {
            database_url: database_url.into(),
            admin_key: None,
            max_body_bytes: 2 * 1024 * 1024,
            db_pool_size: 16,
            sweep_interval: std::time::Duration::from_secs(60),
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
        }
    }
}
