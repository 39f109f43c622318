//! The event bus: memory events for subscribers, and "access changed" signals that flush caches
//! and make streaming subscribers re-check their permission.
//!
//! One process (SQLite): events are broadcast in-process after their transaction commits.
//! Several replicas (PostgreSQL): events are announced with `pg_notify` *inside* the writing
//! transaction — PostgreSQL delivers them only on commit, in commit order, once — and every
//! replica keeps one LISTEN connection that feeds its local broadcast. No home-made protocol.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use memspace_core::error::AppResult;
use memspace_core::principal::Principal;
pub use memspace_core::vocab::MemoryEventKind;

pub const CHANNEL: &str = "memspace";
/// Events buffered per subscriber before it counts as lagging.
pub const SUBSCRIBER_BUFFER: usize = 4096;
const AUTH_CACHE_TTL: Duration = Duration::from_secs(30);
const AUTH_CACHE_MAX: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t")]
pub enum BusMessage {
    /// A committed memory write.
    #[serde(rename = "mem")]
    Memory {
        kind: MemoryEventKind,
        memory_id: Uuid,
        space_id: Uuid,
        actor_kind: String,
        actor_id: Uuid,
        at: DateTime<Utc>,
        /// The process that wrote it.
        origin: Uuid,
    },
    /// Something that may change who can see what: grants, access modes, keys, tokens, roles,
    /// memberships, deleted or moved spaces.
    #[serde(rename = "access")]
    Access { origin: Uuid },
    /// Local only: the LISTEN connection was re-established and events may have been missed;
    /// every in-process cache must be rebuilt from the database.
    #[serde(rename = "resync")]
    Resync,
}

/// A message as delivered in-process, with a slot for what subscribers load because of it:
/// the first subscriber that needs the written memory loads it, the others share the result,
/// so one write costs one read however many subscribers watch the space.
pub struct Delivered {
    pub message: BusMessage,
    pub loaded: tokio::sync::OnceCell<Option<entity::memory::Model>>,
}

struct Inner {
    tx: broadcast::Sender<Arc<Delivered>>,
    postgres: bool,
    origin: Uuid,
    /// PostgreSQL only: whether the LISTEN connection is up (caches are only trusted then).
    listening: AtomicBool,
    auth: Mutex<HashMap<String, (Principal, Instant)>>,
    /// Bumped by every flush: a principal loaded before a flush is not cached after it.
    generation: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
pub struct Bus(Arc<Inner>);

impl Bus {
    pub fn new(backend: DatabaseBackend) -> Bus {
        let (tx, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        Bus(Arc::new(Inner {
            tx,
            postgres: backend == DatabaseBackend::Postgres,
            origin: Uuid::now_v7(),
            listening: AtomicBool::new(false),
            auth: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    pub fn origin(&self) -> Uuid {
        self.0.origin
    }

    pub fn is_postgres(&self) -> bool {
        self.0.postgres
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Delivered>> {
        self.0.tx.subscribe()
    }

    /// Announces messages inside the writing transaction (PostgreSQL); a no-op on SQLite,
    /// where [`Bus::committed`] delivers them after the commit.
    pub async fn stage(
        &self,
        txn: &impl ConnectionTrait,
        messages: &[BusMessage],
    ) -> AppResult<()> {
        if !self.0.postgres {
            return Ok(());
        }
        for m in messages {
            let payload = serde_json::to_string(m)
                .map_err(|e| memspace_core::error::AppError::Internal(e.into()))?;
            txn.execute(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [CHANNEL.into(), payload.into()],
            ))
            .await?;
        }
        Ok(())
    }

    /// After the commit: delivers in-process (SQLite). On PostgreSQL the LISTEN connection
    /// delivers them, to this replica as to every other.
    pub fn committed(&self, messages: Vec<BusMessage>) {
        if self.0.postgres {
            // This replica's own caches must not wait for the notification's round trip: the
            // writer's next request may already depend on the change.
            if messages
                .iter()
                .any(|m| matches!(m, BusMessage::Access { .. }))
            {
                self.flush_caches();
            }
            return;
        }
        for m in messages {
            self.deliver(m);
        }
    }

    /// Hands a committed message to local subscribers and caches.
    pub fn deliver(&self, m: BusMessage) {
        if matches!(m, BusMessage::Access { .. } | BusMessage::Resync) {
            self.flush_caches();
        }
        let _ = self.0.tx.send(Arc::new(Delivered {
            message: m,
            loaded: tokio::sync::OnceCell::new(),
        }));
    }

    /// Stages an access-changed message in `txn`; pass the result to [`Bus::committed`] after
    /// the commit.
    pub async fn access_in(&self, txn: &impl ConnectionTrait) -> AppResult<Vec<BusMessage>> {
        let m = vec![self.access_changed()];
        self.stage(txn, &m).await?;
        Ok(m)
    }

    pub fn access_changed(&self) -> BusMessage {
        BusMessage::Access {
            origin: self.0.origin,
        }
    }

    pub fn flush_caches(&self) {
        let mut cache = self.0.auth.lock().unwrap_or_else(|e| e.into_inner());
        self.0.generation.fetch_add(1, Ordering::SeqCst);
        cache.clear();
    }

    /// The cache generation; pass it back to [`Bus::cache_principal`].
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::SeqCst)
    }

    pub fn set_listening(&self, up: bool) {
        self.0.listening.store(up, Ordering::SeqCst);
        if !up {
            self.flush_caches();
        }
    }

    /// Ready to serve: on PostgreSQL, only while the LISTEN connection is up.
    pub fn ready(&self) -> bool {
        !self.0.postgres || self.0.listening.load(Ordering::SeqCst)
    }

    /// A cached principal for a key hash, if fresh and the bus is trustworthy.
    pub fn cached_principal(&self, key_hash: &str) -> Option<Principal> {
        if !self.ready() {
            return None;
        }
        let cache = self.0.auth.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key_hash)
            .filter(|(_, at)| at.elapsed() < AUTH_CACHE_TTL)
            .map(|(p, _)| p.clone())
    }

    /// Caches a principal loaded when the cache was at `generation`; if access changed since
    /// (a flush happened while it was loading), it may be stale and is not cached.
    pub fn cache_principal(&self, key_hash: String, principal: Principal, generation: u64) {
        if !self.ready() {
            return;
        }
        let mut cache = self.0.auth.lock().unwrap_or_else(|e| e.into_inner());
        if self.0.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if cache.len() >= AUTH_CACHE_MAX {
            cache.retain(|_, (_, at)| at.elapsed() < AUTH_CACHE_TTL);
            if cache.len() >= AUTH_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key_hash, (principal, Instant::now()));
    }
}

/// PostgreSQL: keeps one LISTEN connection, feeds the local bus, reconnects with backoff.
/// While it is down the bus reports not ready and caches are dropped (events may be missed).
pub fn spawn_listener(bus: Bus, url: String) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match sea_orm::sqlx::postgres::PgListener::connect(&url).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %e, "LISTEN failed");
                    } else {
                        // Whatever happened while we were away is unknown: start clean.
                        bus.flush_caches();
                        bus.deliver(BusMessage::Resync);
                        bus.deliver(bus.access_changed());
                        bus.set_listening(true);
                        backoff = Duration::from_millis(100);
                        tracing::info!("listening for events on channel {CHANNEL}");
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(n)) => {
                                    match serde_json::from_str::<BusMessage>(n.payload()) {
                                        Ok(m) => bus.deliver(m),
                                        Err(e) => tracing::warn!(error = %e, "bad event payload"),
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::warn!(error = %e, "event listener failed");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot connect the event listener"),
            }
            bus.set_listening(false);
            tracing::warn!(retry_in = ?backoff, "event listener down; reconnecting");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}
