//! The vector store in PostgreSQL with pgvector ([`PgVector`]): chunk embeddings searched in
//! the database, so a process keeps no vectors in RAM and a write is searchable by every
//! replica the moment it commits.
//!
//! Storage: two columns on `chunks`, added at start (not by a migration, which would fail on a
//! server without the extension): `embedding_dim` and `embedding_half` (`halfvec`, the f32 blob
//! in half precision). This server's inserts send both with the blob ([`PgVector::insert_chunks`]);
//! a trigger fills them from the blob for any other write of it, so every writer (a replica
//! started with `--vector-store memory`, an older binary) keeps them current inside its own
//! transaction (decoding a 384-d blob in PL/pgSQL costs about as much as the HNSW insert). One HNSW index per embedder dimension, a
//! partial expression index (`WHERE embedding_dim = d`, on `embedding_half::halfvec(d)`), since
//! one column holds several dimensions.
//!
//! Search: one statement per embedder: the scope's space ids as one array parameter, the
//! memory filters joined in, `ORDER BY embedding_half <=> q LIMIT n`, with pgvector 0.8's
//! iterative index scan (`hnsw.iterative_scan = relaxed_order`) so that a selective scope or
//! filter still returns n rows; the candidates are rescored in f32 from the blob, so the scores
//! are the in-process index's.
//!
//! Migration of an existing database ([`PgVector::migrate`]): the column is backfilled from the
//! blobs in batches (progress logged), the indexes are built concurrently, then searches
//! switch to SQL; until then the in-process index serves.
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use sea_orm::sea_query::{Alias, Condition, Expr, Order, Query};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait,
    Value,
};
use uuid::Uuid;

use crate::embedder::{dot, from_bytes};
use crate::hit::{best_per_memory, VectorHit};
use entity::{chunk, memory};
use memspace_core::error::{AppError, AppResult};

/// Where chunk vectors are searched (`--vector-store`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// The in-process index, always.
    Memory,
    /// pgvector; a start-up error when the database is not PostgreSQL with the extension.
    Pgvector,
    /// pgvector when the database is PostgreSQL and `CREATE EXTENSION vector` works, else the
    /// in-process index.
    Auto,
}

impl std::str::FromStr for StoreMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "memory" => Ok(StoreMode::Memory),
            "pgvector" => Ok(StoreMode::Pgvector),
            "auto" => Ok(StoreMode::Auto),
            other => Err(format!(
                "unknown vector store {other:?}: use pgvector, memory or auto"
            )),
        }
    }
}

/// The vector store's settings. The HNSW defaults hold recall@10 ≥ 0.95 on `bench/search`.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub mode: StoreMode,
    /// HNSW graph degree (`m`, 2–100).
    pub m: u32,
    /// HNSW build beam (`ef_construction`, at least 2·m).
    pub ef_construction: u32,
    /// HNSW search beam (`hnsw.ef_search`, 1–1000); a query asking for more rows widens it.
    pub ef_search: u32,
    /// Most index tuples an iterative scan visits (`hnsw.max_scan_tuples`) before the exact
    /// fallback takes over.
    pub max_scan_tuples: u32,
    /// A database of fewer chunks than this is migrated during start-up (one transaction,
    /// plain CREATE INDEX); a larger one in the background, its indexes built concurrently.
    pub startup_migration_max: i64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            mode: StoreMode::Auto,
            m: 16,
            ef_construction: 64,
            ef_search: 160,
            max_scan_tuples: 20_000,
            startup_migration_max: 10_000,
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=100).contains(&self.m) {
            return Err(format!("pgvector m must be 2–100 (got {})", self.m));
        }
        if self.ef_construction < 2 * self.m || self.ef_construction > 1000 {
            return Err(format!(
                "pgvector ef_construction must be between 2·m ({}) and 1000 (got {})",
                2 * self.m,
                self.ef_construction
            ));
        }
        if !(1..=1000).contains(&self.ef_search) {
            return Err(format!(
                "pgvector ef_search must be 1–1000 (got {})",
                self.ef_search
            ));
        }
        if self.max_scan_tuples == 0 {
            return Err("pgvector max_scan_tuples must be at least 1".into());
        }
        Ok(())
    }
}

/// Chunks per backfill statement.
const BACKFILL_BATCH: usize = 2_000;

/// The chunk vectors of a PostgreSQL database with pgvector.
pub struct PgVector {
    conn: DatabaseConnection,
    url: String,
    /// The schema the extension lives in, quoted (its types and operators are qualified with
    /// it, so it works whatever the search_path).
    ext: String,
    config: StoreConfig,
    /// Searches run in SQL (the backfill is done and the start-up indexes are built).
    switched: AtomicBool,
    /// Dimensions known to have their HNSW index (or to be having it built).
    indexed: Mutex<HashSet<usize>>,
    /// The embedder dimensions of this process, indexed by [`PgVector::migrate`].
    dims: Vec<usize>,
    /// How many spaces the database holds (deleted ones too: their chunks stay until purged),
    /// and when it was counted.
    spaces_total: Mutex<Option<(Instant, u64)>>,
}

/// A scope of at least this share of all spaces is searched without a space condition in SQL
/// (the HNSW scan then filters nothing), its rows filtered afterwards.
const UNFILTERED_SHARE: f64 = 0.5;
/// How long a count of all spaces is reused.
const SPACES_TOTAL_TTL: Duration = Duration::from_secs(2);

fn pg(sql: impl Into<String>, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn index_name(dim: usize) -> String {
    format!("ix_chunks_halfvec_{dim}")
}

/// A key for this schema's pgvector set-up under PostgreSQL's advisory locks.
const LOCK_KEY: &str = "hashtext(current_schema() || '.memspace_pgvector')";

impl PgVector {
    /// Sets the store up on `conn` as `config.mode` says: None for the in-process index.
    /// `dims` are the dimensions of the embedders this process offers (0: not known yet).
    pub async fn start(
        url: &str,
        conn: DatabaseConnection,
        config: &StoreConfig,
        dims: &[usize],
    ) -> anyhow::Result<Option<Arc<PgVector>>> {
        config.validate().map_err(|e| anyhow!(e))?;
        if config.mode == StoreMode::Memory {
            return Ok(None);
        }
        if conn.get_database_backend() != DbBackend::Postgres {
            if config.mode == StoreMode::Pgvector {
                bail!("--vector-store pgvector needs a PostgreSQL database with the pgvector extension (this one is SQLite)");
            }
            return Ok(None);
        }
        let ext = match create_extension(&conn).await {
            Ok(schema) => schema,
            Err(e) if config.mode == StoreMode::Auto => {
                tracing::info!(reason = %e, "pgvector not available: vectors are searched in-process");
                return Ok(None);
            }
            Err(e) => {
                return Err(e.context(
                    "--vector-store pgvector: the pgvector extension is not available in this \
                     database (install it, e.g. the Debian/Ubuntu package postgresql-16-pgvector, \
                     and run CREATE EXTENSION vector; or use --vector-store memory)",
                ))
            }
        };
        let mut dims: Vec<usize> = dims.iter().copied().filter(|d| *d > 0).collect();
        dims.sort_unstable();
        dims.dedup();
        let store = PgVector {
            conn,
            url: url.to_string(),
            ext: quote(&ext),
            config: config.clone(),
            switched: AtomicBool::new(false),
            indexed: Mutex::default(),
            dims,
            spaces_total: Mutex::default(),
        };
        let ready = store.set_up().await.context("setting up pgvector")?;
        store.switched.store(ready, Ordering::Release);
        tracing::info!(
            schema = %ext,
            ready,
            "vector store: pgvector{}",
            if ready { "" } else { " (migrating; the in-process index serves meanwhile)" }
        );
        Ok(Some(Arc::new(store)))
    }

    /// Whether searches of vectors of `dim` run in SQL.
    pub fn serves(&self, dim: usize) -> bool {
        dim > 0 && self.switched.load(Ordering::Acquire)
    }

    /// Whether the migration is done and searches run in SQL.
    pub fn is_switched(&self) -> bool {
        self.switched.load(Ordering::Acquire)
    }

    /// Columns, trigger and state table (idempotent, under an advisory lock so replicas
    /// starting together do it once); on a small table also the backfill and the indexes.
    /// True when searches can switch at once.
    async fn set_up(&self) -> anyhow::Result<bool> {
        let ext = &self.ext;
        let txn = self.conn.begin().await?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({LOCK_KEY})"))
            .await?;
        let have: i64 = scalar(
            &txn,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'chunks'::regclass \
             AND attname IN ('embedding_dim', 'embedding_half') AND NOT attisdropped",
        )
        .await?;
        if have < 2 {
            txn.execute_unprepared(&format!(
                "ALTER TABLE chunks ADD COLUMN IF NOT EXISTS embedding_dim integer, \
                 ADD COLUMN IF NOT EXISTS embedding_half {ext}.halfvec"
            ))
            .await?;
        }
        txn.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS memspace_pgvector (step text PRIMARY KEY, \
             done_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        // The blob's little-endian f32s decoded in SQL (sign, exponent and mantissa of each
        // word: exact), cast to halfvec.
        txn.execute_unprepared(&format!(
            r#"CREATE OR REPLACE FUNCTION memspace_chunk_embedding() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  -- A writer that sends the half-precision vector with the blob (this server's inserts) leaves
  -- nothing to decode; any other write of the blob (an older binary, the backfill's no-op
  -- update) is decoded here.
  -- (Compared as text: halfvec's operators live in the extension's schema, which need not be
  -- on the search_path.)
  IF NEW.embedding_half IS NOT NULL AND NEW.embedding_dim = octet_length(NEW.embedding) / 4 THEN
    IF TG_OP = 'INSERT' THEN
      RETURN NEW;
    END IF;
    IF NEW.embedding_half::text IS DISTINCT FROM OLD.embedding_half::text THEN
      RETURN NEW;
    END IF;
  END IF;
  NEW.embedding_dim := octet_length(NEW.embedding) / 4;
  IF NEW.embedding_dim > 0 THEN
    NEW.embedding_half := (
      SELECT array_agg((CASE WHEN e = 0 THEN m * 2::float8 ^ (-149)
                             ELSE (8388608 + m) * 2::float8 ^ (e - 150) END) * (1 - 2 * s)
                       ORDER BY i)::real[]
      FROM (SELECT i, get_byte(NEW.embedding, 4 * i + 3) >> 7 AS s,
                   get_byte(NEW.embedding, 4 * i) | (get_byte(NEW.embedding, 4 * i + 1) << 8)
                   | (get_byte(NEW.embedding, 4 * i + 2) << 16)
                   | ((get_byte(NEW.embedding, 4 * i + 3) & 127) << 24) AS bits
            FROM generate_series(0, NEW.embedding_dim - 1) AS i) AS w,
      LATERAL (SELECT bits >> 23 AS e, bits & 8388607 AS m) AS f
    )::{ext}.halfvec;
  ELSE
    NEW.embedding_half := NULL;
  END IF;
  RETURN NEW;
END
$fn$"#
        ))
        .await?;
        let trigger: i64 = scalar(
            &txn,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'chunks'::regclass \
             AND tgname = 'chunks_embedding_half'",
        )
        .await?;
        if trigger == 0 {
            txn.execute_unprepared(
                "CREATE TRIGGER chunks_embedding_half BEFORE INSERT OR UPDATE OF embedding \
                 ON chunks FOR EACH ROW EXECUTE FUNCTION memspace_chunk_embedding()",
            )
            .await?;
        }
        let max = self.config.startup_migration_max.max(0);
        let small: i64 = scalar(
            &txn,
            &format!("SELECT count(*) FROM (SELECT 1 FROM chunks LIMIT {max}) AS c"),
        )
        .await?;
        let mut ready = backfilled(&txn).await?;
        if small < max {
            if !ready {
                txn.execute_unprepared(
                    "UPDATE chunks SET embedding = embedding WHERE embedding_dim IS NULL",
                )
                .await?;
                mark_backfilled(&txn).await?;
            }
            for dim in &self.dims {
                txn.execute_unprepared(&self.create_index_sql(*dim, false))
                    .await?;
            }
            ready = true;
        } else if ready {
            ready = self.missing_indexes(&txn).await?.is_empty();
        }
        txn.commit().await?;
        if ready {
            self.indexed().extend(self.dims.iter().copied());
        }
        Ok(ready)
    }

    fn create_index_sql(&self, dim: usize, concurrently: bool) -> String {
        let ext = &self.ext;
        format!(
            "CREATE INDEX {} IF NOT EXISTS {} ON chunks USING hnsw \
             ((embedding_half::{ext}.halfvec({dim})) {ext}.halfvec_cosine_ops) \
             WITH (m = {}, ef_construction = {}) WHERE embedding_dim = {dim}",
            if concurrently { "CONCURRENTLY" } else { "" },
            index_name(dim),
            self.config.m,
            self.config.ef_construction,
        )
    }

    /// The start-up dimensions without a valid index.
    async fn missing_indexes(&self, db: &impl ConnectionTrait) -> anyhow::Result<Vec<usize>> {
        let valid: HashSet<String> = db
            .query_all(pg(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 WHERE i.indrelid = 'chunks'::regclass AND i.indisvalid",
                vec![],
            ))
            .await?
            .iter()
            .filter_map(|r| r.try_get::<String>("", "relname").ok())
            .collect();
        Ok(self
            .dims
            .iter()
            .copied()
            .filter(|d| !valid.contains(&index_name(*d)))
            .collect())
    }

    fn indexed(&self) -> std::sync::MutexGuard<'_, HashSet<usize>> {
        self.indexed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings a large existing database over: backfill in batches, then the indexes built
    /// concurrently, then the switch. Runs in the background on a connection of its own;
    /// another process doing it (the advisory lock is taken) is waited for. Retries after
    /// an error.
    pub async fn migrate(&self) {
        if self.is_switched() {
            return;
        }
        loop {
            match self.migrate_once().await {
                Ok(true) => {
                    self.indexed().extend(self.dims.iter().copied());
                    self.switched.store(true, Ordering::Release);
                    tracing::info!(
                        "vector store: pgvector migration done; searches run in PostgreSQL"
                    );
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "pgvector migration interrupted; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// One attempt; false when another process holds the migration lock.
    async fn migrate_once(&self) -> anyhow::Result<bool> {
        let mut options = sea_orm::ConnectOptions::new(self.url.clone());
        options
            .max_connections(1)
            .min_connections(1)
            .sqlx_logging(false);
        let conn = Database::connect(options).await?;
        let result = self.migrate_on(&conn).await;
        conn.close().await.ok();
        result
    }

    async fn migrate_on(&self, conn: &DatabaseConnection) -> anyhow::Result<bool> {
        let locked: bool = conn
            .query_one(pg(
                format!("SELECT pg_try_advisory_lock({LOCK_KEY}) AS locked"),
                vec![],
            ))
            .await?
            .ok_or_else(|| anyhow!("no row"))?
            .try_get("", "locked")?;
        if !locked {
            tracing::info!("pgvector migration: another process is migrating; waiting");
            return Ok(false);
        }
        if !backfilled(conn).await? {
            self.backfill(conn).await?;
            mark_backfilled(conn).await?;
        }
        for dim in self.missing_indexes(conn).await? {
            let started = Instant::now();
            tracing::info!(
                dim,
                "pgvector migration: building the HNSW index concurrently"
            );
            // A concurrent build that failed leaves an invalid index behind: rebuild it.
            conn.execute_unprepared(&format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}",
                index_name(dim)
            ))
            .await?;
            conn.execute_unprepared(&self.create_index_sql(dim, true))
                .await?;
            tracing::info!(
                dim,
                secs = started.elapsed().as_secs_f64(),
                "pgvector migration: index built"
            );
        }
        conn.execute_unprepared(&format!("SELECT pg_advisory_unlock({LOCK_KEY})"))
            .await?;
        Ok(self.missing_indexes(conn).await?.is_empty())
    }

    /// Fills the columns of every chunk written before the trigger existed, in batches in
    /// primary-key order (rows written meanwhile are filled by the trigger).
    async fn backfill(&self, conn: &DatabaseConnection) -> anyhow::Result<()> {
        let total: i64 = scalar(
            conn,
            "SELECT count(*) FROM chunks WHERE embedding_dim IS NULL",
        )
        .await?;
        tracing::info!(chunks = total, "pgvector migration: backfilling embeddings");
        let started = Instant::now();
        let mut last = Uuid::nil();
        let mut done: i64 = 0;
        loop {
            let ids: Vec<Uuid> = conn
                .query_all(pg(
                    format!(
                        "SELECT id FROM chunks WHERE id > $1 ORDER BY id LIMIT {BACKFILL_BATCH}"
                    ),
                    vec![last.into()],
                ))
                .await?
                .iter()
                .map(|r| r.try_get::<Uuid>("", "id"))
                .collect::<Result<_, _>>()?;
            let Some(end) = ids.last().copied() else {
                break;
            };
            let filled = conn
                .execute(pg(
                    "UPDATE chunks SET embedding = embedding \
                     WHERE id = ANY(CAST($1 AS uuid[])) AND embedding_dim IS NULL",
                    vec![uuid_array(&ids).into()],
                ))
                .await?
                .rows_affected();
            done += filled as i64;
            last = end;
            tracing::info!(
                done,
                total,
                per_sec = (done as f64 / started.elapsed().as_secs_f64().max(1e-3)) as u64,
                "pgvector migration: backfill progress"
            );
        }
        Ok(())
    }

    /// Inserts chunk rows with their half-precision vector (pgvector's text form) beside the
    /// blob, so the trigger has nothing to decode: one multi-row statement per call.
    pub async fn insert_chunks(
        &self,
        db: &impl ConnectionTrait,
        rows: &[chunk::Model],
    ) -> Result<(), DbErr> {
        if rows.is_empty() {
            return Ok(());
        }
        let half = format!("CAST($1 AS {}.halfvec)", self.ext);
        let mut insert = Query::insert();
        insert.into_table(chunk::Entity).columns([
            Alias::new("id"),
            Alias::new("memory_id"),
            Alias::new("space_id"),
            Alias::new("ord"),
            Alias::new("text"),
            Alias::new("embedding"),
            Alias::new("embedding_dim"),
            Alias::new("embedding_half"),
        ]);
        for r in rows {
            let v = from_bytes(&r.embedding);
            let text: Option<String> = (!v.is_empty()).then(|| vector_text(&v));
            insert
                .values([
                    r.id.into(),
                    r.memory_id.into(),
                    r.space_id.into(),
                    r.ord.into(),
                    r.text.clone().into(),
                    r.embedding.clone().into(),
                    (v.len() as i32).into(),
                    Expr::cust_with_values(half.as_str(), [text]),
                ])
                .map_err(|e| DbErr::Custom(e.to_string()))?;
        }
        db.execute(DbBackend::Postgres.build(&insert)).await?;
        Ok(())
    }

    /// The `top` memories of `spaces` closest to `query`, best first, among the memories
    /// `filter` (a condition on `memories`) accepts: one statement in a transaction of its own
    /// (a savepoint inside a caller's transaction) that sets the scan's parameters.
    pub async fn search<C>(
        &self,
        db: &C,
        spaces: &[Uuid],
        query: &[f32],
        top: usize,
        filter: Option<Condition>,
    ) -> AppResult<Vec<VectorHit>>
    where
        C: ConnectionTrait + TransactionTrait,
    {
        let dim = query.len();
        if spaces.is_empty() || top == 0 || dim == 0 {
            return Ok(Vec::new());
        }
        self.ensure_index(dim);
        let total = self
            .spaces_total(db)
            .await
            .map_err(|e| AppError::Internal(anyhow!("pgvector search: {e}")))?;
        // A scope of most spaces costs the HNSW scan more as a condition (a 1,000-id `ANY`
        // checked on every visited row, and its planning) than the few rows it would reject:
        // those are dropped here instead, and the loop below asks for more if too few remain.
        let in_sql = (spaces.len() as f64) < UNFILTERED_SHARE * total as f64;
        let allowed: HashSet<Uuid> = spaces.iter().copied().collect();
        // Several chunks of one memory may come back: ask for more rows than memories.
        let mut rows = top * 2 + 16;
        loop {
            let found = self
                .query(db, in_sql.then_some(spaces), query, rows, filter.clone())
                .await
                .map_err(|e| AppError::Internal(anyhow!("pgvector search: {e}")))?;
            let complete = found.len() < rows;
            let found = found
                .into_iter()
                .filter(|(space, _)| allowed.contains(space))
                .map(|(_, hit)| hit)
                .collect();
            let hits = best_per_memory(found, top);
            if hits.len() >= top || complete || rows >= 1000 {
                return Ok(hits);
            }
            rows = (rows * 4).min(1000);
        }
    }

    /// How many spaces the database holds, counted at most every [`SPACES_TOTAL_TTL`].
    async fn spaces_total<C: ConnectionTrait>(&self, db: &C) -> Result<u64, DbErr> {
        let cached = *self.spaces_total.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, n)) = cached.filter(|(at, _)| at.elapsed() < SPACES_TOTAL_TTL) {
            return Ok(n);
        }
        let row = db
            .query_one(pg(r#"SELECT count(*)::int8 AS n FROM "spaces""#, vec![]))
            .await?;
        let n = row
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        let n = u64::try_from(n).unwrap_or(0);
        *self.spaces_total.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), n));
        Ok(n)
    }

    /// The `rows` chunks nearest to `query` (with their space), of `spaces` when given (else
    /// of every space: the caller filters).
    async fn query<C>(
        &self,
        db: &C,
        spaces: Option<&[Uuid]>,
        query: &[f32],
        rows: usize,
        filter: Option<Condition>,
    ) -> Result<Vec<(Uuid, VectorHit)>, DbErr>
    where
        C: ConnectionTrait + TransactionTrait,
    {
        let ext = &self.ext;
        let dim = query.len();
        let vector = vector_text(query);
        let mut select = Query::select();
        select
            .column((chunk::Entity, chunk::Column::MemoryId))
            .column((chunk::Entity, chunk::Column::SpaceId))
            .column((chunk::Entity, chunk::Column::Ord))
            .column((chunk::Entity, chunk::Column::Embedding))
            .from(chunk::Entity)
            // The dimension is a literal: a partial index is only used when the planner can
            // prove its predicate, which a parameter (in a generic plan) does not allow.
            .and_where(Expr::cust(format!(r#""chunks"."embedding_dim" = {dim}"#)));
        if let Some(spaces) = spaces {
            select.and_where(Expr::cust_with_values(
                r#""chunks"."space_id" = ANY(CAST($1 AS uuid[]))"#,
                [uuid_array(spaces)],
            ));
        }
        select
            .order_by_expr(
                Expr::cust_with_values(
                    format!(
                        r#""chunks"."embedding_half"::{ext}.halfvec({dim}) OPERATOR({ext}.<=>) CAST($1 AS {ext}.halfvec({dim}))"#
                    ),
                    [vector],
                ),
                Order::Asc,
            )
            .limit(rows as u64);
        if let Some(filter) = filter {
            select
                .inner_join(
                    memory::Entity,
                    Expr::col((memory::Entity, memory::Column::Id))
                        .equals((chunk::Entity, chunk::Column::MemoryId)),
                )
                .cond_where(filter);
        }
        let ef_search = self.config.ef_search.max(rows as u32).min(1000);
        let txn = db.begin().await?;
        txn.execute(pg(
            "SELECT set_config('hnsw.ef_search', $1, true), \
             set_config('hnsw.iterative_scan', 'relaxed_order', true), \
             set_config('hnsw.max_scan_tuples', $2, true)",
            vec![
                ef_search.to_string().into(),
                self.config.max_scan_tuples.to_string().into(),
            ],
        ))
        .await?;
        let found = txn.query_all(DbBackend::Postgres.build(&select)).await?;
        txn.commit().await?;
        let mut hits = Vec::with_capacity(found.len());
        for r in found {
            let memory_id: Uuid = r.try_get("", "memory_id")?;
            let space_id: Uuid = r.try_get("", "space_id")?;
            let ord: i32 = r.try_get("", "ord")?;
            let blob: Vec<u8> = r.try_get("", "embedding")?;
            let v = from_bytes(&blob);
            if v.len() == dim {
                let score = dot(query, &v);
                hits.push((
                    space_id,
                    VectorHit {
                        memory_id,
                        ord,
                        score,
                    },
                ));
            }
        }
        Ok(hits)
    }

    /// A dimension first seen after start-up (a remote embedder's) gets its index in the
    /// background; meanwhile its searches are exact scans in SQL.
    fn ensure_index(&self, dim: usize) {
        if !self.indexed().insert(dim) {
            return;
        }
        let url = self.url.clone();
        let sql = self.create_index_sql(dim, true);
        tokio::spawn(async move {
            let result = async {
                let mut options = sea_orm::ConnectOptions::new(url);
                options.max_connections(1).sqlx_logging(false);
                let conn = Database::connect(options).await?;
                conn.execute_unprepared(&sql).await?;
                conn.close().await.ok();
                Ok::<_, DbErr>(())
            }
            .await;
            match result {
                Ok(()) => tracing::info!(dim, "pgvector: HNSW index ready"),
                Err(e) => tracing::warn!(dim, error = %e, "pgvector: index not built"),
            }
        });
    }
}

/// The schema of the `vector` extension, created if it is not there yet.
async fn create_extension(conn: &DatabaseConnection) -> anyhow::Result<String> {
    if let Some(schema) = extension_schema(conn).await? {
        return Ok(schema);
    }
    let created = conn
        .execute_unprepared("CREATE EXTENSION IF NOT EXISTS vector")
        .await;
    // Another process may have created it at the same moment (a unique violation here).
    match (extension_schema(conn).await?, created) {
        (Some(schema), _) => Ok(schema),
        (None, Err(e)) => Err(anyhow!("CREATE EXTENSION vector failed: {e}")),
        (None, Ok(_)) => Err(anyhow!("CREATE EXTENSION vector created nothing")),
    }
}

async fn extension_schema(conn: &DatabaseConnection) -> anyhow::Result<Option<String>> {
    let row = conn
        .query_one(pg(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
             WHERE e.extname = 'vector'",
            vec![],
        ))
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get::<String>("", "nspname")?),
        None => None,
    })
}

async fn backfilled(db: &impl ConnectionTrait) -> Result<bool, DbErr> {
    Ok(db
        .query_one(pg(
            "SELECT 1 AS done FROM memspace_pgvector WHERE step = 'backfill'",
            vec![],
        ))
        .await?
        .is_some())
}

async fn mark_backfilled(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    db.execute_unprepared(
        "INSERT INTO memspace_pgvector (step) VALUES ('backfill') ON CONFLICT DO NOTHING",
    )
    .await?;
    Ok(())
}

async fn scalar(db: &impl ConnectionTrait, sql: &str) -> Result<i64, DbErr> {
    db.query_one(pg(format!("SELECT ({sql}) AS n"), vec![]))
        .await?
        .ok_or_else(|| DbErr::Custom("no row".into()))?
        .try_get("", "n")
}

/// `items` between `open` and `close`, comma-separated.
fn delimited<T: std::fmt::Display>(open: char, items: &[T], close: char) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(items.len() * 12 + 2);
    s.push(open);
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s.push(close);
    s
}

/// A vector in pgvector's text form, `[x1,x2,…]` (shortest round-trip decimals).
fn vector_text(v: &[f32]) -> String {
    delimited('[', v, ']')
}

/// A PostgreSQL array literal of ids, bound as one text parameter.
fn uuid_array(ids: &[Uuid]) -> String {
    delimited('{', ids, '}')
}

/// The best chunk of each memory, best first, at most `top`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_modes_and_parameters_parse_or_say_what_is_wrong() {
        assert_eq!("PGVECTOR".parse::<StoreMode>(), Ok(StoreMode::Pgvector));
        assert_eq!("auto".parse::<StoreMode>(), Ok(StoreMode::Auto));
        assert!("faiss"
            .parse::<StoreMode>()
            .unwrap_err()
            .contains("pgvector, memory or auto"));
        assert!(StoreConfig::default().validate().is_ok());
        let bad = StoreConfig {
            ef_construction: 10,
            ..StoreConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("ef_construction"));
        assert_eq!(uuid_array(&[]), "{}");
        assert_eq!(
            uuid_array(&[Uuid::nil(), Uuid::nil()]).matches(',').count(),
            1
        );
    }
}
