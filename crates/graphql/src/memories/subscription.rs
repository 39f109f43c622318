//! `memoryEvents(spaceId)`: committed memory writes of one space, streamed over WebSocket.
//!
//! Access holds while streaming: whenever access may have changed (grants, keys, tokens,
//! memberships, deleted spaces — announced on the bus) and at least every few seconds, the
//! subscriber's credential and permission are checked again; if either is gone the stream ends
//! with an error carrying the code. A subscriber that falls behind its buffer gets
//! SUBSCRIBER_LAGGED and its stream ends; others are unaffected.
use std::time::Duration;

use async_graphql::futures_util::stream::{self, Stream};
use async_graphql::{Context, Object, Result, Subscription, ID};
use chrono::{DateTime, Utc};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::Memory;
use crate::context::{resource_id, Ctx, LoaderSlot};
use crate::directory::{load_principal, PrincipalObject};
use entity::memory;
use memspace_core::error::AppError;
use memspace_core::principal::PrincipalKind;
use memspace_domain::auth as keys;
use memspace_domain::db::Db;
use memspace_domain::events::{BusMessage, MemoryEventKind};

/// How often a subscriber's access is re-checked even when nothing was announced.
const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// The credential a WebSocket connection authenticated with (kept to re-check it).
#[derive(Clone)]
pub struct WsCredential(pub String);

/// Why a re-check refused a subscriber (a cloneable summary of the [`AppError`]).
#[derive(Clone)]
enum Lost {
    Unauthenticated,
    NotFound(String),
    Internal(String),
}

impl Lost {
    fn of(e: AppError) -> Lost {
        match e {
            AppError::Unauthenticated => Lost::Unauthenticated,
            AppError::NotFound { id, .. } => Lost::NotFound(id),
            other => Lost::Internal(other.message()),
        }
    }

    fn error(&self) -> AppError {
        match self {
            Lost::Unauthenticated => AppError::Unauthenticated,
            Lost::NotFound(id) => AppError::not_found("space", id),
            Lost::Internal(m) => AppError::Internal(anyhow::anyhow!("access re-check: {m}")),
        }
    }
}

type RecheckKey = (u64, u64, String, Uuid);
type SharedCheck = std::sync::Arc<tokio::sync::OnceCell<Result<(), Lost>>>;

/// Access re-checks shared by every subscriber of the process: subscribers holding the same
/// credential on the same space share one check per access change (bus generation) and per
/// re-check period, so 1,000 subscriptions cost one check, not 1,000.
pub struct Rechecks {
    started: std::time::Instant,
    results: std::sync::Mutex<std::collections::HashMap<RecheckKey, SharedCheck>>,
    /// Checks actually run (for tests and metrics).
    pub runs: std::sync::atomic::AtomicU64,
}

impl Default for Rechecks {
    fn default() -> Self {
        Rechecks {
            started: std::time::Instant::now(),
            results: Default::default(),
            runs: Default::default(),
        }
    }
}

impl Rechecks {
    async fn check(&self, db: &Db, secret: &str, space_id: Uuid) -> Result<(), AppError> {
        let generation = db.bus.generation();
        let epoch = (self.started.elapsed().as_millis() / RECHECK_EVERY.as_millis()) as u64;
        let key = (generation, epoch, keys::hash(secret), space_id);
        let cell = {
            let mut map = self.results.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() > 4096 {
                map.retain(|k, _| k.0 == generation && k.1 == epoch);
            }
            map.entry(key).or_default().clone()
        };
        cell.get_or_init(|| async {
            self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let principal = keys::authenticate_cached(&db.read, &db.bus, secret)
                .await
                .map_err(Lost::of)?;
            memspace_domain::spaces::service::load_live(&db.read, &principal, space_id)
                .await
                .map(|_| ())
                .map_err(Lost::of)
        })
        .await
        .clone()
        .map_err(|l| l.error())
    }
}

pub struct MemoryEvent {
    kind: MemoryEventKind,
    memory_id: Uuid,
    space_id: Uuid,
    actor_kind: String,
    actor_id: Uuid,
    at: DateTime<Utc>,
    memory: Option<memory::Model>,
}

/// A committed change to a memory.
#[Object]
impl MemoryEvent {
    /// What happened.
    async fn kind(&self) -> MemoryEventKind {
        self.kind
    }
    /// The memory that changed.
    async fn memory_id(&self) -> ID {
        ID(self.memory_id.to_string())
    }
    /// Its space.
    async fn space_id(&self) -> ID {
        ID(self.space_id.to_string())
    }
    /// The memory as it is now; null for DELETED (or when it is already gone again).
    async fn memory(&self) -> Option<Memory> {
        self.memory.clone().map(Memory)
    }
    /// Who wrote it; null for a space token.
    async fn actor(&self, ctx: &Context<'_>) -> Result<Option<PrincipalObject>> {
        match PrincipalKind::parse(&self.actor_kind) {
            Some(kind @ (PrincipalKind::User | PrincipalKind::Agent)) => {
                load_principal(ctx, kind, self.actor_id).await
            }
            _ => Ok(None),
        }
    }
    /// When the change was committed.
    async fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

#[derive(Default)]
pub struct MemorySubscription;

struct Watch {
    db: Db,
    rechecks: std::sync::Arc<Rechecks>,
    loaders: Option<LoaderSlot>,
    secret: String,
    space_id: Uuid,
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<memspace_domain::events::Delivered>>,
    tick: tokio::time::Interval,
    done: bool,
}

impl Watch {
    /// The subscriber may still read the space: credential valid, VIEW, space not deleted.
    async fn still_allowed(&self) -> Result<(), AppError> {
        self.rechecks
            .check(&self.db, &self.secret, self.space_id)
            .await
    }

    async fn next(&mut self) -> Option<Result<MemoryEvent, AppError>> {
        if self.done {
            return None;
        }
        loop {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Ok(delivered) => match &delivered.message {
                        BusMessage::Memory { kind, memory_id, space_id, actor_kind, actor_id, at, .. }
                            if *space_id == self.space_id =>
                        {
                            let memory = if *kind == MemoryEventKind::Deleted {
                                None
                            } else {
                                let db = &self.db;
                                let loaded = delivered
                                    .loaded
                                    .get_or_try_init(|| {
                                        memspace_domain::memories::service::find_live(&db.read, *memory_id)
                                    })
                                    .await;
                                match loaded {
                                    Ok(m) => m.clone(),
                                    Err(e) => return Some(Err(e.into())),
                                }
                            };
                            // Every event is resolved with fresh loaders: tags and counts as
                            // they are now, not as the first event saw them.
                            if let Some(slot) = &self.loaders {
                                slot.renew();
                            }
                            return Some(Ok(MemoryEvent {
                                kind: *kind,
                                memory_id: *memory_id,
                                space_id: *space_id,
                                actor_kind: actor_kind.clone(),
                                actor_id: *actor_id,
                                at: *at,
                                memory,
                            }));
                        }
                        BusMessage::Access { .. } | BusMessage::Resync => {
                            if let Err(e) = self.still_allowed().await {
                                self.done = true;
                                return Some(Err(e));
                            }
                        }
                        BusMessage::Memory { .. } => {}
                    },
                    Err(RecvError::Lagged(n)) => {
                        self.done = true;
                        return Some(Err(AppError::SubscriberLagged(n)));
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.tick.tick() => {
                    if let Err(e) = self.still_allowed().await {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}

/// Live events over WebSocket (graphql-transport-ws, on `/graphql` or `/graphql/ws`).
#[Subscription]
impl MemorySubscription {
    /// Committed memory writes of a space, in commit order: CREATED, UPDATED, DELETED.
    /// NOT_FOUND when the space is not readable. The stream ends with an error when access is
    /// lost (unshared, key or token revoked, space deleted) or the subscriber lags behind.
    async fn memory_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space to watch (VIEW permission).")] space_id: ID,
    ) -> Result<impl Stream<Item = Result<MemoryEvent>>> {
        let principal = ctx.principal()?;
        let secret = ctx
            .data_opt::<WsCredential>()
            .map(|c| c.0.clone())
            .ok_or(AppError::Unauthenticated)?;
        let db = ctx.db().clone();
        let space_id = resource_id("space", &space_id)?;
        // Subscribe first, then check: nothing committed after the check can be missed.
        let rx = db.bus.subscribe();
        memspace_domain::spaces::service::load_live(&db.read, principal, space_id).await?;
        let mut tick = tokio::time::interval(RECHECK_EVERY);
        tick.reset();
        let rechecks = ctx
            .data_opt::<std::sync::Arc<Rechecks>>()
            .cloned()
            .unwrap_or_default();
        let watch = Watch {
            db,
            rechecks,
            loaders: ctx.data_opt::<LoaderSlot>().cloned(),
            secret,
            space_id,
            rx,
            tick,
            done: false,
        };
        Ok(stream::unfold(watch, |mut w| async move {
            w.next()
                .await
                .map(|item| (item.map_err(async_graphql::Error::from), w))
        }))
    }
}
