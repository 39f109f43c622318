//! Record: what a search leaves behind — recall counts of the memories it returned, the last
//! activity of their spaces, and the audit trail of cross-tenant reads — without a database
//! write on the request path.
//!
//! - Recall counts and last activity are accumulated in memory and flushed by one background
//!   task in one transaction at most every `interval` (one second by default) and at shutdown
//!   ([`Recall::flush`]). A crash may lose up to that interval of counters, never a memory.
//!   Reads of this process add the counts not yet flushed ([`Recall::pending_recalls`],
//!   [`Recall::pending_activity`]), so a client sees its own searches counted at once.
//! - Cross-tenant search audit events are never lost: a search that read another
//!   organization's space waits until its audit rows are committed, but the rows of all
//!   searches waiting at that moment go in one INSERT by one writer (group commit, in arrival
//!   order, through a bounded queue), so the fsync is shared instead of queued per search.
//!   Searches within the caller's own organization write nothing and wait for nothing.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Condition, Expr, IntoIden, LockType, Order, Query, SelectStatement};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::audit;
use crate::db::Db;
use entity::{audit_event, memory, space};
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;

/// Audit batches waiting for the writer at most (a full queue makes searches wait for room).
const AUDIT_QUEUE: usize = 1024;
/// Searches whose audit rows go into one INSERT at most.
const AUDIT_BATCH: usize = 256;

#[derive(Default)]
struct Pending {
    recalls: HashMap<Uuid, i64>,
    activity: HashMap<Uuid, DateTime<Utc>>,
}

struct AuditJob {
    rows: Vec<audit_event::ActiveModel>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The recorder of recalls: cheap to clone, shared by every request of the process.
#[derive(Clone)]
pub struct Recall {
    db: Db,
    pending: Arc<Mutex<Pending>>,
    /// Serialises flushes (the periodic one and [`Recall::flush`]).
    flushing: Arc<tokio::sync::Mutex<()>>,
    audit: mpsc::Sender<AuditJob>,
}

impl Recall {
    /// Starts the two background writers (counters every `interval`, audit batches as they
    /// come) on the current runtime.
    pub fn spawn(db: Db, interval: Duration) -> Recall {
        let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
        let recall = Recall {
            db: db.clone(),
            pending: Arc::default(),
            flushing: Arc::default(),
            audit: tx,
        };
        tokio::spawn(write_audit(db, rx));
        let flusher = recall.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = flusher.flush().await {
                    tracing::warn!(error = ?e, "recall counters not flushed (kept for the next try)");
                }
            }
        });
        recall
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one search's hits: `memories` recalled, in `spaces` (with their organization).
    /// Returns once the audit rows of any cross-tenant space are committed.
    pub async fn record(
        &self,
        principal: &Principal,
        memories: &[Uuid],
        spaces: &[(Uuid, Uuid)],
    ) -> AppResult<()> {
        let at = memspace_core::clock::now();
        {
            let mut p = self.lock();
            for id in memories {
                *p.recalls.entry(*id).or_default() += 1;
            }
            for (space_id, _) in spaces {
                p.activity.insert(*space_id, at);
            }
        }
        let rows: Vec<_> = spaces
            .iter()
            .filter(|(_, org)| *org != principal.organization_id)
            .map(|(id, org)| audit::space_row(principal, "memory.search", *id, *org))
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        let lost = || AppError::Internal(anyhow::anyhow!("audit writer stopped"));
        self.audit
            .send(AuditJob { rows, done })
            .await
            .map_err(|_| lost())?;
        wait.await
            .map_err(|_| lost())?
            .map_err(|e| AppError::Internal(anyhow::anyhow!("audit write: {e}")))
    }

    /// Recalls of `memory_id` recorded by this process and not yet flushed.
    pub fn pending_recalls(&self, memory_id: Uuid) -> i64 {
        self.lock().recalls.get(&memory_id).copied().unwrap_or(0)
    }

    /// The last search activity in `space_id` recorded by this process and not yet flushed.
    pub fn pending_activity(&self, space_id: Uuid) -> Option<DateTime<Utc>> {
        self.lock().activity.get(&space_id).copied()
    }

    /// Writes the accumulated counters in one transaction (also called at shutdown). What was
    /// taken is subtracted only after the commit, so reads never see a count go backwards; on
    /// failure everything stays pending for the next flush.
    pub async fn flush(&self) -> AppResult<()> {
        let _one = self.flushing.lock().await;
        let (recalls, activity) = {
            let p = self.lock();
            (p.recalls.clone(), p.activity.clone())
        };
        if recalls.is_empty() && activity.is_empty() {
            return Ok(());
        }
        write_counters(&self.db, &recalls, &activity).await?;
        let mut p = self.lock();
        for (id, n) in recalls {
            if let Some(left) = p.recalls.get_mut(&id) {
                *left -= n;
                if *left <= 0 {
                    p.recalls.remove(&id);
                }
            }
        }
        for (id, at) in activity {
            if p.activity.get(&id) == Some(&at) {
                p.activity.remove(&id);
            }
        }
        Ok(())
    }
}

/// `SELECT id FROM table WHERE id IN ids ORDER BY id`, `FOR UPDATE` on PostgreSQL: the rows of
/// concurrent flushes (of several replicas) are locked in id order, which rules out deadlocks.
fn ordered(postgres: bool, table: sea_orm::sea_query::DynIden, ids: Vec<Uuid>) -> SelectStatement {
    let id = Expr::col(sea_orm::sea_query::Alias::new("id"));
    let mut q = Query::select()
        .expr(id.clone())
        .from(table)
        .and_where(id.is_in(ids))
        .order_by(sea_orm::sea_query::Alias::new("id"), Order::Asc)
        .to_owned();
    if postgres {
        q.lock(LockType::Update);
    }
    q
}

async fn write_counters(
    db: &Db,
    recalls: &HashMap<Uuid, i64>,
    activity: &HashMap<Uuid, DateTime<Utc>>,
) -> AppResult<()> {
    let txn = crate::db::begin(&db.write).await?;
    let postgres = txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres;
    // One UPDATE per distinct increment (nearly always just +1 and a few others).
    let mut by_delta: HashMap<i64, Vec<Uuid>> = HashMap::new();
    for (id, n) in recalls {
        by_delta.entry(*n).or_default().push(*id);
    }
    for (delta, mut ids) in by_delta {
        ids.sort();
        for part in ids.chunks(500) {
            memory::Entity::update_many()
                .col_expr(
                    memory::Column::RecallCount,
                    Expr::col(memory::Column::RecallCount).add(delta),
                )
                .filter(memory::Column::Id.in_subquery(ordered(
                    postgres,
                    memory::Entity.into_iden(),
                    part.to_vec(),
                )))
                .exec(&txn)
                .await?;
        }
    }
    if let Some(latest) = activity.values().max().copied() {
        let mut ids: Vec<Uuid> = activity.keys().copied().collect();
        ids.sort();
        for part in ids.chunks(500) {
            space::Entity::update_many()
                .col_expr(space::Column::LastActivityAt, Expr::value(latest))
                .filter(space::Column::Id.in_subquery(ordered(
                    postgres,
                    space::Entity.into_iden(),
                    part.to_vec(),
                )))
                .filter(
                    Condition::any()
                        .add(space::Column::LastActivityAt.is_null())
                        .add(space::Column::LastActivityAt.lt(latest)),
                )
                .exec(&txn)
                .await?;
        }
    }
    txn.commit().await?;
    Ok(())
}

/// The audit writer: takes what is queued (up to [`AUDIT_BATCH`] searches), writes it in one
/// INSERT, answers each search. Ends when every sender is gone.
async fn write_audit(db: Db, mut rx: mpsc::Receiver<AuditJob>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < AUDIT_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let rows: Vec<_> = jobs.iter().flat_map(|j| j.rows.iter().cloned()).collect();
        let result: Result<(), DbErr> = audit_event::Entity::insert_many(rows)
            .exec_without_returning(&db.write)
            .await
            .map(|_| ());
        let result = result.map_err(|e| e.to_string());
        for j in jobs {
            let _ = j.done.send(result.clone());
        }
    }
}
