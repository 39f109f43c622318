//! Configuration: command-line flags with `MEMSPACE_*` environment fallbacks.
//! Every default runs with zero set-up (an SQLite file in the working directory).
use std::net::SocketAddr;

pub use memspace_engine::config::{EmbedderConfig, RemoteEmbedder};
pub use memspace_engine::pgvector::{StoreConfig as VectorStoreConfig, StoreMode as VectorStore};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://memspace.db?mode=rwc";

/// `memspace-index` beside an SQLite database file; None for PostgreSQL and in-memory SQLite.
pub fn default_data_dir(database_url: &str) -> Option<std::path::PathBuf> {
    let rest = database_url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//").split('?').next()?;
    if path.is_empty() || path.contains(":memory:") || database_url.contains("mode=memory") {
        return None;
    }
    let parent = std::path::Path::new(path).parent()?;
    Some(parent.join("memspace-index"))
}

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
    /// Admin API key (24–256 non-whitespace characters) to create on first start instead of a
    /// random one; a different one at a later start replaces the previous admin key (logged).
    /// When set, no secret is printed.
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
    /// Most fields in one operation once its fragments are expanded.
    #[arg(long, env = "MEMSPACE_MAX_FIELDS", default_value_t = 2_000)]
    pub max_fields: usize,
    /// Seconds before a request is cancelled.
    #[arg(long, env = "MEMSPACE_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Requests per second per API key or space token; 0 turns rate limiting off (default).
    #[arg(long, env = "MEMSPACE_RATE_LIMIT_PER_SECOND", default_value_t = 0)]
    pub rate_limit_per_second: u32,
    /// Burst allowed above the rate (default: twice the rate).
    #[arg(long, env = "MEMSPACE_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// Largest response (HTTP body, WebSocket `next` payload), in bytes; larger answers get
    /// PAYLOAD_TOO_LARGE.
    #[arg(long, env = "MEMSPACE_MAX_RESPONSE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_response_bytes: usize,
    /// Seconds a connection may take to send its request headers before it is closed.
    #[arg(long, env = "MEMSPACE_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Seconds a WebSocket may take to send `connection_init` before it is closed with 4408.
    #[arg(long, env = "MEMSPACE_WS_INIT_TIMEOUT_SECS", default_value_t = 10)]
    pub ws_init_timeout_secs: u64,
    /// Subscriptions open at once on one WebSocket.
    #[arg(
        long,
        env = "MEMSPACE_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value_t = 100
    )]
    pub max_subscriptions_per_connection: usize,
    /// Subscriptions open at once with one API key or space token (all its sockets).
    #[arg(
        long,
        env = "MEMSPACE_MAX_SUBSCRIPTIONS_PER_KEY",
        default_value_t = 500
    )]
    pub max_subscriptions_per_key: usize,
    /// Seconds between sweeps that delete expired memories.
    #[arg(long, env = "MEMSPACE_SWEEP_INTERVAL_SECS", default_value_t = 60)]
    pub sweep_interval_secs: u64,
    /// Milliseconds between flushes of search recall counters and activity (a crash loses at
    /// most this much of them; never a memory).
    #[arg(long, env = "MEMSPACE_RECALL_FLUSH_MS", default_value_t = 1000)]
    pub recall_flush_ms: u64,
    /// Directory of the persisted vector and keyword indexes (default: `memspace-index`
    /// beside the SQLite file; not persisted on PostgreSQL or in-memory SQLite unless set).
    #[arg(long, env = "MEMSPACE_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Where keyword searches run: `tantivy` (an in-process BM25 index kept in step with the
    /// database, persisted in the data directory; top-k with block-max WAND) or `database`
    /// (SQLite FTS5 / PostgreSQL tsvector, which rank every match).
    #[arg(long, env = "MEMSPACE_KEYWORD_ENGINE", value_enum, default_value_t = KeywordEngine::Tantivy)]
    pub keyword_engine: KeywordEngine,
    /// Candidates of the in-process ANN index's graph walk (its beam), rescored against the f32 query
    /// (16–4,096): higher is better recall, slower. The default holds recall@10 0.97 on
    /// `bench/search` at 100k.
    #[arg(long, env = "MEMSPACE_ANN_EF_SEARCH", default_value_t = memspace_engine::vector_index::ANN_EF_SEARCH,
          value_parser = clap::value_parser!(u16).range(16..=4096))]
    pub ann_ef_search: u16,
    #[command(flatten)]
    pub embedders: EmbedderArgs,
    #[command(flatten)]
    pub vector_store: VectorStoreArgs,
}

/// Where keyword searches run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KeywordEngine {
    #[default]
    Tantivy,
    Database,
}

/// Where chunk vectors are searched.
#[derive(Clone, Debug, clap::Args)]
pub struct VectorStoreArgs {
    /// Where chunk vectors are searched: `pgvector` (in PostgreSQL; a start-up error when the
    /// database lacks the extension), `memory` (the in-process index) or `auto` (pgvector
    /// when the database is PostgreSQL and `CREATE EXTENSION vector` works, else memory).
    #[arg(long, env = "MEMSPACE_VECTOR_STORE", default_value = "auto")]
    pub vector_store: VectorStore,
    /// pgvector HNSW graph degree (`m`, 2–100; applies to indexes built from now on).
    #[arg(long, env = "MEMSPACE_PGVECTOR_M", default_value_t = 16)]
    pub pgvector_m: u32,
    /// pgvector HNSW build beam (`ef_construction`, 2·m–1000; indexes built from now on).
    #[arg(long, env = "MEMSPACE_PGVECTOR_EF_CONSTRUCTION", default_value_t = 64)]
    pub pgvector_ef_construction: u32,
    /// pgvector HNSW search beam (`hnsw.ef_search`, 1–1000; widened to the rows a query asks).
    #[arg(long, env = "MEMSPACE_PGVECTOR_EF_SEARCH", default_value_t = 160)]
    pub pgvector_ef_search: u32,
}

impl VectorStoreArgs {
    pub fn config(&self) -> Result<VectorStoreConfig, String> {
        let config = VectorStoreConfig {
            mode: self.vector_store,
            m: self.pgvector_m,
            ef_construction: self.pgvector_ef_construction,
            ef_search: self.pgvector_ef_search,
            ..VectorStoreConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

/// Which embedders the server offers.
#[derive(Clone, Debug, clap::Args)]
pub struct EmbedderArgs {
    /// Embedder of spaces created without one (`builtin-hash-384`, `minilm-l6-v2`, or a remote
    /// embedder's name).
    #[arg(long, env = "MEMSPACE_DEFAULT_EMBEDDER")]
    pub default_embedder: Option<String>,
    /// Directory with downloaded models (`scripts/fetch-model` fills it).
    #[arg(long, env = "MEMSPACE_MODELS_DIR", default_value = "models")]
    pub models_dir: std::path::PathBuf,
    /// A remote OpenAI-compatible embedder, `NAME=openai:MODEL@BASE_URL` (repeatable; the
    /// environment variable takes a comma-separated list). Its API key is read from
    /// `MEMSPACE_EMBEDDER_<NAME>_API_KEY`.
    #[arg(long = "embedder", env = "MEMSPACE_EMBEDDERS", value_delimiter = ',')]
    pub remote: Vec<String>,
    /// Seconds before a call to a remote embedder is abandoned (then retried).
    #[arg(long, env = "MEMSPACE_EMBEDDER_TIMEOUT_SECS", default_value_t = 30)]
    pub embedder_timeout_secs: u64,
    /// Retries of a remote call after a 429, a 5xx, a timeout or a lost connection.
    #[arg(long, env = "MEMSPACE_EMBEDDER_RETRIES", default_value_t = 3)]
    pub embedder_retries: u32,
    /// Most texts sent in one remote call (the provider's limit; OpenAI allows 2048).
    #[arg(long, env = "MEMSPACE_EMBEDDER_MAX_BATCH", default_value_t = 256)]
    pub embedder_max_batch: usize,
}

impl EmbedderArgs {
    /// The embedder configuration, with API keys read from the environment.
    pub fn config(&self) -> Result<EmbedderConfig, String> {
        let mut remote = Vec::new();
        for spec in self.remote.iter().filter(|s| !s.trim().is_empty()) {
            let mut r = RemoteEmbedder::parse(spec)?;
            r.api_key = std::env::var(RemoteEmbedder::key_variable(&r.name))
                .ok()
                .filter(|k| !k.is_empty());
            remote.push(r);
        }
        Ok(EmbedderConfig {
            default: self
                .default_embedder
                .clone()
                .filter(|d| !d.trim().is_empty()),
            models_dir: Some(self.models_dir.clone()),
            remote,
            timeout: std::time::Duration::from_secs(self.embedder_timeout_secs.max(1)),
            retries: self.embedder_retries,
            max_batch: self.embedder_max_batch.clamp(1, 2048),
        })
    }
}

/// Everything the app needs to run; built from [`ServeArgs`] by the CLI and directly by tests.
#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    pub admin_key: Option<String>,
    pub max_body_bytes: usize,
    pub db_pool_size: u32,
    pub sweep_interval: std::time::Duration,
    /// How often recall counters and search activity are flushed to the database.
    pub recall_flush_interval: std::time::Duration,
    /// Scopes of at most this many vectors are scanned exactly, larger ones go to the ANN
    /// index (tests lower it to exercise the ANN path on small data).
    pub vector_exact_max: usize,
    /// The in-process ANN walk's candidates (`--ann-ef-search`).
    pub ann_ef_search: usize,
    /// Where the vector index is persisted (None: in memory only).
    pub data_dir: Option<std::path::PathBuf>,
    /// Where keyword searches run (the tantivy index lives in `data_dir/keyword`).
    pub keyword_engine: KeywordEngine,
    /// Spaces of more memories than this that the keyword index does not hold load in the
    /// background (their searches run in the database meanwhile); tests lower it.
    pub keyword_inline_load_max: u64,
    pub query_limits: crate::http::limits::QueryLimits,
    pub request_timeout: std::time::Duration,
    /// (requests per second, burst) per credential; `None` = off.
    pub rate_limit: Option<(u32, u32)>,
    pub max_response_bytes: usize,
    pub header_read_timeout: std::time::Duration,
    pub ws_init_timeout: std::time::Duration,
    pub max_subscriptions_per_connection: usize,
    pub max_subscriptions_per_key: usize,
    pub embedders: EmbedderConfig,
    /// Where chunk vectors are searched (pgvector or the in-process index) and pgvector's
    /// HNSW parameters.
    pub vector_store: VectorStoreConfig,
}

impl Config {
    pub fn server_limits(&self) -> crate::http::ServerLimits {
        use std::num::NonZeroU32;
        crate::http::ServerLimits {
            max_body_bytes: self.max_body_bytes,
            request_timeout: self.request_timeout,
            query: self.query_limits,
            rate_limit: self.rate_limit.and_then(|(rate, burst)| {
                Some((NonZeroU32::new(rate)?, NonZeroU32::new(burst.max(rate))?))
            }),
            max_response_bytes: self.max_response_bytes,
            header_read_timeout: self.header_read_timeout,
            ws_init_timeout: self.ws_init_timeout,
            max_subscriptions_per_connection: self.max_subscriptions_per_connection,
            max_subscriptions_per_key: self.max_subscriptions_per_key,
        }
    }

    pub fn new(database_url: impl Into<String>) -> Self {
        let limits = crate::http::ServerLimits::default();
        Config {
            database_url: database_url.into(),
            admin_key: None,
            max_body_bytes: 2 * 1024 * 1024,
            db_pool_size: 16,
            sweep_interval: std::time::Duration::from_secs(60),
            recall_flush_interval: std::time::Duration::from_secs(1),
            vector_exact_max: memspace_engine::vector_index::EXACT_MAX,
            ann_ef_search: usize::from(memspace_engine::vector_index::ANN_EF_SEARCH),
            data_dir: None,
            keyword_engine: KeywordEngine::default(),
            keyword_inline_load_max: memspace_engine::keyword_index::INLINE_LOAD_MAX,
            query_limits: crate::http::limits::QueryLimits::default(),
            request_timeout: std::time::Duration::from_secs(30),
            rate_limit: None,
            max_response_bytes: limits.max_response_bytes,
            header_read_timeout: limits.header_read_timeout,
            ws_init_timeout: limits.ws_init_timeout,
            max_subscriptions_per_connection: limits.max_subscriptions_per_connection,
            max_subscriptions_per_key: limits.max_subscriptions_per_key,
            embedders: EmbedderConfig::default(),
            vector_store: VectorStoreConfig::default(),
        }
    }
}

impl TryFrom<&ServeArgs> for Config {
    type Error = String;

    fn try_from(args: &ServeArgs) -> Result<Self, String> {
        Ok(Config {
            database_url: args.db.database_url.clone(),
            admin_key: args.admin_key.clone(),
            max_body_bytes: args.max_body_bytes,
            db_pool_size: args.db_pool_size,
            sweep_interval: std::time::Duration::from_secs(args.sweep_interval_secs.max(1)),
            recall_flush_interval: std::time::Duration::from_millis(args.recall_flush_ms.max(10)),
            vector_exact_max: memspace_engine::vector_index::EXACT_MAX,
            ann_ef_search: usize::from(args.ann_ef_search),
            data_dir: args
                .data_dir
                .clone()
                .or_else(|| default_data_dir(&args.db.database_url)),
            keyword_engine: args.keyword_engine,
            keyword_inline_load_max: memspace_engine::keyword_index::INLINE_LOAD_MAX,
            query_limits: crate::http::limits::QueryLimits {
                max_depth: args.max_depth.max(1),
                max_complexity: args.max_complexity.max(1),
                max_aliases: args.max_aliases,
                max_fields: args.max_fields.max(1),
            },
            request_timeout: std::time::Duration::from_secs(args.request_timeout_secs.max(1)),
            rate_limit: (args.rate_limit_per_second > 0).then(|| {
                let rate = args.rate_limit_per_second;
                (
                    rate,
                    args.rate_limit_burst.unwrap_or(rate.saturating_mul(2)),
                )
            }),
            max_response_bytes: args.max_response_bytes.max(1024),
            header_read_timeout: std::time::Duration::from_secs(
                args.header_read_timeout_secs.max(1),
            ),
            ws_init_timeout: std::time::Duration::from_secs(args.ws_init_timeout_secs.max(1)),
            max_subscriptions_per_connection: args.max_subscriptions_per_connection,
            max_subscriptions_per_key: args.max_subscriptions_per_key,
            embedders: args.embedders.config()?,
            vector_store: args.vector_store.config()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_embedder_specs_parse_or_say_what_is_wrong() {
        let r =
            RemoteEmbedder::parse("oa=openai:text-embedding-3-small@https://api.openai.com/v1/")
                .unwrap();
        assert_eq!(r.name, "oa");
        assert_eq!(r.model, "text-embedding-3-small");
        assert_eq!(r.url, "https://api.openai.com/v1");
        for (spec, names) in [
            ("oa", "NAME=openai:MODEL@BASE_URL"),
            ("Bad Name=openai:m@http://x", "name"),
            ("oa=cohere:m@http://x", "provider"),
            ("oa=openai:@http://x", "model"),
            ("oa=openai:m@ftp://x", "URL"),
        ] {
            let err = RemoteEmbedder::parse(spec).unwrap_err();
            assert!(err.contains(names), "{spec}: {err}");
        }
        assert_eq!(
            RemoteEmbedder::key_variable("open-ai.small"),
            "MEMSPACE_EMBEDDER_OPEN_AI_SMALL_API_KEY"
        );
    }
}
