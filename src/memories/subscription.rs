//! `memoryEvents(spaceId)`: committed memory writes of one space, streamed over WebSocket.
//!
//! Access holds while streaming: whenever access may have changed (grants, keys, tokens,
//! memberships, deleted spaces — announced on the bus) and at least every few seconds, the
//! subscriber's credential and permission are checked again; if either is gone the stream ends
//! with an error carrying the code. A subscriber that falls behind its buffer gets
//! SUBSCRIBER_LAGGED and its stream ends; others are unaffected.
use std::time::Duration;

use async_graphql::futures_util::stream::{self, Stream, StreamExt};
use async_graphql::futures_util::SinkExt;
use async_graphql::http::WsMessage;
use async_graphql::{Context, Data, Object, Result, Subscription, ID};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use chrono::{DateTime, Utc};
use sea_orm::{EntityTrait, QueryFilter};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::graphql::Memory;
use super::service::live;
use crate::auth::{keys, PrincipalKind};
use crate::db::Db;
use crate::directory::graphql::{load_principal, PrincipalObject};
use crate::error::AppError;
use crate::events::{BusMessage, MemoryEventKind};
use crate::schema::{resource_id, Ctx, Loaders};
use crate::server::AppState;
use entity::memory;

/// How often a subscriber's access is re-checked even when nothing was announced.
const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// The credential a WebSocket connection authenticated with (kept to re-check it).
#[derive(Clone)]
pub struct WsCredential(pub String);

/// A committed change to a memory.
pub struct MemoryEvent {
    kind: MemoryEventKind,
    memory_id: Uuid,
    space_id: Uuid,
    actor_kind: String,
    actor_id: Uuid,
    at: DateTime<Utc>,
    memory: Option<memory::Model>,
}

#[Object]
impl MemoryEvent {
    async fn kind(&self) -> MemoryEventKind {
        self.kind
    }
    async fn memory_id(&self) -> ID {
        ID(self.memory_id.to_string())
    }
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
    async fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

#[derive(Default)]
pub struct MemorySubscription;

struct Watch {
    db: Db,
    secret: String,
    space_id: Uuid,
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::events::Delivered>>,
    tick: tokio::time::Interval,
    done: bool,
}

impl Watch {
    /// The subscriber may still read the space: credential valid, VIEW, space not deleted.
    async fn still_allowed(&self) -> Result<(), AppError> {
        let principal = keys::authenticate(&self.db.read, &self.secret).await?;
        let access = crate::spaces::service::load(&self.db.read, &principal, self.space_id).await?;
        if access.space.deleted_at.is_some() {
            return Err(AppError::not_found("space", self.space_id));
        }
        Ok(())
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
                                    .get_or_try_init(|| async {
                                        memory::Entity::find_by_id(*memory_id)
                                            .filter(live())
                                            .one(&db.read)
                                            .await
                                    })
                                    .await;
                                match loaded {
                                    Ok(m) => m.clone(),
                                    Err(e) => return Some(Err(e.into())),
                                }
                            };
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

#[Subscription]
impl MemorySubscription {
    /// Committed memory writes of a space, in commit order: CREATED, UPDATED, DELETED.
    /// NOT_FOUND when the space is not readable. The stream ends with an error when access is
    /// lost (unshared, key or token revoked, space deleted) or the subscriber lags behind.
    async fn memory_events(
        &self,
        ctx: &Context<'_>,
        space_id: ID,
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
        let access = crate::spaces::service::load(&db.read, principal, space_id).await?;
        if access.space.deleted_at.is_some() {
            return Err(AppError::not_found("space", space_id).into());
        }
        let mut tick = tokio::time::interval(RECHECK_EVERY);
        tick.reset();
        let watch = Watch {
            db,
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

/// The credential of a `connection_init` payload, in the same three forms as the HTTP headers.
fn credential(payload: &serde_json::Value) -> Option<String> {
    let obj = payload.as_object()?;
    let get = |name: &str| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
            .map(str::trim)
    };
    if let Some(auth) = get("authorization") {
        let (scheme, rest) = auth.split_once(char::is_whitespace)?;
        let rest = rest.trim();
        if (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
            && !rest.is_empty()
        {
            return Some(rest.to_string());
        }
        return None;
    }
    get("x-api-key")
        .or_else(|| get("apiKey"))
        .filter(|k| !k.is_empty())
        .map(str::to_string)
}

/// Closes the socket with this code when `connection_init` is refused.
const FORBIDDEN_CLOSE: u16 = 4403;
const FORBIDDEN_PREFIX: &str = "Forbidden: ";

/// Serves one WebSocket connection.
pub async fn serve(
    state: AppState,
    protocol: async_graphql::http::WebSocketProtocols,
    socket: WebSocket,
) {
    let (mut sink, source) = socket.split();
    let input = source
        .take_while(|res| std::future::ready(res.is_ok()))
        .filter_map(|msg| {
            std::future::ready(match msg {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => Some(m.into_data()),
                _ => None,
            })
        });
    let db = state.db.clone();
    let on_init = move |payload: serde_json::Value| {
        let db = db.clone();
        async move {
            let Some(secret) = credential(&payload) else {
                return Err(format!("{FORBIDDEN_PREFIX}connection_init carries no API key").into());
            };
            let principal = keys::authenticate(&db.read, &secret).await.map_err(|e| {
                async_graphql::Error::new(format!("{FORBIDDEN_PREFIX}{}", e.message()))
            })?;
            let mut data = Data::default();
            data.insert(Loaders::new(&db.read, Some(principal.clone())));
            data.insert(principal);
            data.insert(WsCredential(secret));
            Ok(data)
        }
    };
    let outgoing = async_graphql::http::WebSocket::new(state.schema.clone(), input, protocol)
        .on_connection_init(on_init)
        .map(|msg| match msg {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => {
                let code = if reason.starts_with(FORBIDDEN_PREFIX) {
                    FORBIDDEN_CLOSE
                } else {
                    code
                };
                Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                }))
            }
        });
    async_graphql::futures_util::pin_mut!(outgoing);
    while let Some(item) = outgoing.next().await {
        let closing = matches!(item, Message::Close(_));
        if sink.send(item).await.is_err() || closing {
            break;
        }
    }
}
