//! Opening the database: SQLite (embedded default) or PostgreSQL, with migrations.
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use memspace_core::error::AppResult;
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::ConnectOptions as _;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, ExecResult, QueryResult, SqlxSqliteConnector, Statement,
};

/// The connections of one process.
///
/// SQLite allows one writer at a time; funnelling every write transaction through a one-connection
/// pool means our own writers queue in-process instead of failing with SQLITE_BUSY, while readers
/// use a pool of their own (WAL lets them run beside the writer). On PostgreSQL both are one pool.
#[derive(Clone)]
pub struct Db {
    pub read: DatabaseConnection,
    pub write: DatabaseConnection,
    /// SQL statements run so far (reads and writes), for tests and metrics.
    pub statements: Arc<AtomicU64>,
    /// Of those, the ones that write (INSERT, UPDATE, DELETE): a read path must add none.
    pub writes: Arc<AtomicU64>,
    /// Events of committed writes, and cache invalidation.
    pub bus: crate::events::Bus,
    /// The embedders this process offers (set from the configuration by [`crate::build`]).
    pub embedders: Arc<memspace_engine::registry::Registry>,
}

impl Db {
    pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<Db> {
        let statements = Arc::new(AtomicU64::new(0));
        let writes = Arc::new(AtomicU64::new(0));
        let (mut read, mut write) = if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let options = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("invalid SQLite URL {url}"))?
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before the response that acknowledges it is sent.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .disable_statement_logging();
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .with_context(|| format!("cannot open {url}"))?;
            let write = SqlxSqliteConnector::from_sqlx_sqlite_pool(writer);
            if memory {
                // Each connection to an in-memory database sees its own empty database.
                (write.clone(), write)
            } else {
                let reader = SqlitePoolOptions::new()
                    .max_connections(pool_size.max(1))
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot open {url}"))?;
                (SqlxSqliteConnector::from_sqlx_sqlite_pool(reader), write)
            }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut options = ConnectOptions::new(url);
            options
                .max_connections(pool_size.max(2))
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                // No ping before every checkout (a round trip per statement): a broken
                // connection fails its statement and is dropped by the pool instead.
                .test_before_acquire(false)
                .sqlx_logging(false);
            let pool = Database::connect(options)
                .await
                .with_context(|| format!("cannot connect to {}", redact(url)))?;
            (pool.clone(), pool)
        } else {
            anyhow::bail!(
                "unsupported database URL {}: use sqlite:// or postgres://",
                redact(url)
            );
        };
        for conn in [&mut read, &mut write] {
            let counter = statements.clone();
            let write_counter = writes.clone();
            conn.set_metric_callback(move |info| {
                counter.fetch_add(1, Ordering::Relaxed);
                if is_write(&info.statement.sql) {
                    write_counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let bus = crate::events::Bus::new(write.get_database_backend());
        Ok(Db {
            read,
            write,
            statements,
            writes,
            bus,
            embedders: Arc::new(memspace_engine::registry::Registry::builtin()),
        })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        Migrator::up(&self.write, None)
            .await
            .context("running migrations")
    }

    pub fn statement_count(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }
}

/// Whether a statement changes rows (the SQL that sea-orm and our services send begins with its
/// verb; the SQLite write-lock no-op of [`begin`] counts too, being a write).
fn is_write(sql: &str) -> bool {
    let verb = sql.trim_start().get(..6).unwrap_or("");
    ["INSERT", "UPDATE", "DELETE"]
        .iter()
        .any(|w| verb.eq_ignore_ascii_case(w))
}

/// Begins a write transaction. On SQLite it takes the write lock at once (a no-op write as the
/// first statement, the effect of `BEGIN IMMEDIATE`): a transaction that read first and wrote
/// later could fail with SQLITE_BUSY when another process wrote in between, which no busy
/// timeout can wait out. This way the busy timeout applies and writers of several processes
/// on one file queue instead of failing.
pub async fn begin<C>(db: &C) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr>
where
    C: ConnectionTrait + sea_orm::TransactionTrait,
{
    let txn = db.begin().await?;
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
        txn.execute_unprepared("UPDATE organizations SET handle = handle WHERE 0 = 1")
            .await?;
    }
    Ok(txn)
}

/// One write use case's transaction and the events it announces: begin (taking the write lock,
/// see [`begin`]), run statements on it (it is a [`ConnectionTrait`]), [`Write::stage`] the
/// events, [`Write::commit`] (which publishes them after the commit). Dropped without a commit,
/// it rolls back and publishes nothing. Every write service goes through it, so none can
/// publish an event for a write that did not commit, or forget to stage one on PostgreSQL.
pub struct Write {
    txn: DatabaseTransaction,
    bus: crate::events::Bus,
    events: Vec<crate::events::BusMessage>,
}

impl Db {
    /// Begins a write on the write pool.
    pub async fn begin_write(&self) -> Result<Write, DbErr> {
        Ok(Write {
            txn: begin(&self.write).await?,
            bus: self.bus.clone(),
            events: Vec::new(),
        })
    }
}

impl Write {
    /// Announces `messages` with this transaction: staged in it on PostgreSQL (delivered on
    /// commit), delivered in-process after [`Write::commit`] on SQLite.
    pub async fn stage(&mut self, messages: Vec<crate::events::BusMessage>) -> AppResult<()> {
        self.bus.stage(&self.txn, &messages).await?;
        self.events.extend(messages);
        Ok(())
    }

    /// Announces that who may see what may have changed (flushes caches, re-checks
    /// subscribers).
    pub async fn access_changed(&mut self) -> AppResult<()> {
        let m = self.bus.access_changed();
        self.stage(vec![m]).await
    }

    /// Commits, then publishes the staged events.
    pub async fn commit(self) -> AppResult<()> {
        self.txn.commit().await?;
        self.bus.committed(self.events);
        Ok(())
    }

    pub fn bus(&self) -> &crate::events::Bus {
        &self.bus
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Write {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one(stmt).await
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.txn.support_returning()
    }
}

/// Nested transactions (savepoints) inside a write, so a read that sets scan parameters with
/// `SET LOCAL` (the pgvector search) runs on the write's own connection.
#[async_trait::async_trait]
impl sea_orm::TransactionTrait for Write {
    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.txn.begin().await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<sea_orm::IsolationLevel>,
        access_mode: Option<sea_orm::AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.txn
            .begin_with_config(isolation_level, access_mode)
            .await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, sea_orm::TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, E>> + Send + 'c>,
            > + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.txn.transaction(callback).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<sea_orm::IsolationLevel>,
        access_mode: Option<sea_orm::AccessMode>,
    ) -> Result<T, sea_orm::TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, E>> + Send + 'c>,
            > + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.txn
            .transaction_with_config(callback, isolation_level, access_mode)
            .await
    }
}

/// Hides a password in a database URL before it is logged.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..s + 3], &creds[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
