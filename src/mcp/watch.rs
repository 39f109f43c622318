//! Resource-updated notifications from the realtime event bus, with access held as GraphQL
//! subscriptions hold it: whenever access may have changed (and every few seconds) the
//! credential and the permission are checked again, and the watch ends once either is gone.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::uri::uri_of;
use memspace_core::error::AppError;
use memspace_core::principal::Principal;
use memspace_domain::auth as keys;
use memspace_domain::db::Db;
use memspace_domain::events::{BusMessage, Delivered};
use memspace_domain::spaces::service::load_live;

const RECHECK_EVERY: Duration = Duration::from_secs(5);

pub struct Watch {
    db: Db,
    secret: Arc<str>,
    spaces: Vec<Uuid>,
    rx: tokio::sync::broadcast::Receiver<Arc<Delivered>>,
}

impl Watch {
    /// Subscribes to the bus, then checks that every space is readable (NOT_FOUND otherwise):
    /// nothing committed after the check can be missed.
    pub async fn start(
        db: &Db,
        principal: &Principal,
        secret: Arc<str>,
        spaces: Vec<Uuid>,
    ) -> Result<Watch, AppError> {
        let rx = db.bus.subscribe();
        for id in &spaces {
            load_live(&db.read, principal, *id).await?;
        }
        Ok(Watch {
            db: db.clone(),
            secret,
            spaces,
            rx,
        })
    }

    async fn still_allowed(&self) -> Result<(), AppError> {
        let principal = keys::authenticate(&self.db.read, &self.secret).await?;
        for id in &self.spaces {
            load_live(&self.db.read, &principal, *id).await?;
        }
        Ok(())
    }

    /// Calls `notify` with the URI of each space a memory write committed to, until access is
    /// lost or the subscriber lags (the error says which), or `notify` answers false (the
    /// client is gone; then `Ok`).
    pub async fn run<F, Fut>(mut self, mut notify: F) -> Result<(), AppError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut tick = tokio::time::interval(RECHECK_EVERY);
        tick.reset();
        loop {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Ok(delivered) => match &delivered.message {
                        BusMessage::Memory { space_id, .. } if self.spaces.contains(space_id) => {
                            if !notify(uri_of(*space_id)).await {
                                return Ok(());
                            }
                        }
                        BusMessage::Access { .. } | BusMessage::Resync => self.still_allowed().await?,
                        BusMessage::Memory { .. } => {}
                    },
                    Err(RecvError::Lagged(n)) => return Err(AppError::SubscriberLagged(n)),
                    Err(RecvError::Closed) => return Ok(()),
                },
                _ = tick.tick() => self.still_allowed().await?,
            }
        }
    }
}
