//! The GraphQL-over-WebSocket transport (graphql-transport-ws, and the legacy graphql-ws), on
//! `/graphql` and `/graphql/ws` alike: authenticates `connection_init`,
//! then runs every operation sent on the socket through the same admission as HTTP
//! ([`super::gate`]): the credential as it stands now, the rate limit, the query limits, fresh
//! loaders, the request timeout and the response size cap. A socket whose credential stops
//! working (revoked key or token) is closed with 4403; one that never sends `connection_init`
//! is closed with 4408; one whose credential cannot be checked (the database timed out or is
//! unavailable) is closed with 1013 "Try Again Later", never with 4403: the credential may be
//! fine, and a client must not drop it.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_graphql::futures_util::stream::{self, BoxStream, StreamExt};
use async_graphql::futures_util::SinkExt;
use async_graphql::http::WsMessage;
use async_graphql::parser::types::OperationType;
use async_graphql::{Data, Executor, Response};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::StatusCode;

use super::gate::{self, Reject};
use super::state::AppState;
use super::trace::{new_trace_id, operation_name_of};
use memspace_core::error::AppError;
use memspace_domain::auth as keys;
use memspace_domain::events::BusMessage;
use memspace_graphql::memories::subscription::WsCredential;

/// The credential of a `connection_init` payload, in the same three forms as the HTTP headers,
/// at the top of the payload or inside its `headers` object (as Apollo Client and Hasura's
/// clients send it: `{"headers": {"Authorization": "Bearer <key>"}}`).
fn credential(payload: &serde_json::Value) -> Option<String> {
    let obj = payload.as_object()?;
    let has_own = obj.keys().any(|k| {
        ["authorization", "x-api-key", "apiKey"]
            .iter()
            .any(|name| k.eq_ignore_ascii_case(name))
    });
    if !has_own {
        let headers = obj
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("headers"))
            .map(|(_, v)| v)?;
        return credential_in(headers.as_object()?);
    }
    credential_in(obj)
}

fn credential_in(obj: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
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

/// Closes the socket with this code when the credential is refused (at `connection_init` or
/// later, once it was revoked).
const FORBIDDEN_CLOSE: u16 = 4403;
/// Closes the socket with this code when `connection_init` did not come in time.
const INIT_TIMEOUT_CLOSE: u16 = 4408;
/// RFC 6455 "Try Again Later": `connection_init` could not be answered because the credential
/// could not be checked (database timeout or outage).
const TRY_AGAIN_LATER_CLOSE: u16 = 1013;
/// graphql-transport-ws's close code for a message that is not a valid protocol message.
const INVALID_MESSAGE_CLOSE: u16 = 4400;

/// A close frame's reason fits in 123 bytes (a control frame carries at most 125, two of them
/// the code); a longer one (a parse error quoting the message) is cut on a char boundary.
fn close_reason(reason: &str) -> &str {
    const MAX: usize = 123;
    if reason.len() <= MAX {
        return reason;
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Closes the socket with this code (RFC 6455 "message too big") when a message exceeds the
/// HTTP body limit.
const TOO_BIG_CLOSE: u16 = 1009;

const FORBIDDEN_PREFIX: &str = "Forbidden: ";

/// Why `connection_init` was refused: decides the close code (graphql-transport-ws) and the
/// `code` of the `connection_error` (legacy graphql-ws). Recorded by the init callback, since
/// async-graphql hands on only the message of the error it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InitRefusal {
    /// No credential, or one that is unknown, revoked or expired.
    Credential,
    /// The credential could not be checked: the database failed or did not answer in time.
    Unavailable,
}

impl InitRefusal {
    fn of(err: &AppError) -> InitRefusal {
        match err {
            AppError::Unauthenticated => InitRefusal::Credential,
            _ => InitRefusal::Unavailable,
        }
    }

    fn close_code(self) -> u16 {
        match self {
            InitRefusal::Credential => FORBIDDEN_CLOSE,
            InitRefusal::Unavailable => TRY_AGAIN_LATER_CLOSE,
        }
    }

    /// The `extensions.code` of the refusal (the same as HTTP's for the same failure).
    fn error_code(self) -> &'static str {
        match self {
            InitRefusal::Credential => "UNAUTHENTICATED",
            InitRefusal::Unavailable => "INTERNAL",
        }
    }
}

/// The reason of a 1013 close.
const UNAVAILABLE_REASON: &str = "the server cannot check credentials right now; try again later";

/// What the operations of one socket share with its loop.
struct Conn {
    /// The credential `connection_init` carried, once accepted.
    secret: OnceLock<String>,
    /// `connection_init` arrived (its credential is being checked or was): the init timeout no
    /// longer applies; the check has its own bound.
    init_received: AtomicBool,
    initialised: AtomicBool,
    /// Why `connection_init` was refused, once it was.
    refusal: OnceLock<InitRefusal>,
    /// Subscriptions open on this socket.
    subscriptions: AtomicUsize,
    /// Set when the socket must close (code, reason).
    close: tokio::sync::watch::Sender<Option<(u16, String)>>,
}

impl Conn {
    fn close(&self, code: u16, reason: &str) {
        self.close.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some((code, reason.to_string()));
                true
            } else {
                false
            }
        });
    }

    fn revoked(&self) {
        self.close(
            FORBIDDEN_CLOSE,
            "Forbidden: the connection's credential is no longer valid",
        );
    }
}

/// Runs the operations of one socket (the executor the protocol handler calls).
#[derive(Clone)]
struct Operations {
    state: AppState,
    conn: Arc<Conn>,
}

/// Holds one subscription's place under both caps; released when the stream is dropped.
struct SubscriptionSlot {
    state: AppState,
    conn: Arc<Conn>,
    key: uuid::Uuid,
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.conn.subscriptions.fetch_sub(1, Ordering::Relaxed);
        self.state.subscriptions.release(self.key);
    }
}

fn one(response: Response) -> BoxStream<'static, Response> {
    stream::once(async move { response }).boxed()
}

fn refused(r: Reject, trace_id: &str) -> Response {
    Response::from_errors(vec![r.into_server_error(trace_id)])
}

impl Operations {
    async fn start(self, request: async_graphql::Request) -> BoxStream<'static, Response> {
        let trace_id = new_trace_id();
        let started = Instant::now();
        let operation = request
            .operation_name
            .clone()
            .or_else(|| operation_name_of(&request.query));
        let state = &self.state;
        let secret = self.conn.secret.get().cloned();
        let (principal, mut request) = match gate::admit(state, secret.as_deref(), request).await {
            Ok(admitted) => admitted,
            Err(r) => {
                if r.code == "UNAUTHENTICATED" {
                    self.conn.revoked();
                }
                state.metrics.observe(
                    operation.as_deref(),
                    r.code,
                    started.elapsed().as_secs_f64(),
                );
                return one(refused(r, &trace_id));
            }
        };
        let wanted = request.operation_name.clone();
        let kind = request
            .parsed_query()
            .ok()
            .and_then(|doc| gate::operation_type(doc, wanted.as_deref()));
        let credential_id = principal.credential_id;
        let request = gate::attach(state, request, principal)
            .data(WsCredential(secret.unwrap_or_default()))
            .data(state.rechecks.clone());
        if kind == Some(OperationType::Subscription) {
            let limits = &state.limits;
            if self.conn.subscriptions.fetch_add(1, Ordering::Relaxed)
                >= limits.max_subscriptions_per_connection
            {
                self.conn.subscriptions.fetch_sub(1, Ordering::Relaxed);
                let r = too_many("connection", limits.max_subscriptions_per_connection);
                state.metrics.observe(operation.as_deref(), r.code, 0.0);
                return one(refused(r, &trace_id));
            }
            if !state
                .subscriptions
                .acquire(credential_id, limits.max_subscriptions_per_key)
            {
                self.conn.subscriptions.fetch_sub(1, Ordering::Relaxed);
                let r = too_many("key", limits.max_subscriptions_per_key);
                state.metrics.observe(operation.as_deref(), r.code, 0.0);
                return one(refused(r, &trace_id));
            }
            let slot = SubscriptionSlot {
                state: state.clone(),
                conn: self.conn.clone(),
                key: credential_id,
            };
            state
                .metrics
                .observe(operation.as_deref(), "subscribed", 0.0);
            let conn = self.conn.clone();
            let max_bytes = state.limits.max_response_bytes;
            return state
                .schema
                .execute_stream(request)
                .map(move |mut response| {
                    let _held = &slot;
                    let _ = gate::label_errors(&mut response, &trace_id);
                    if response.errors.iter().any(|e| {
                        e.extensions
                            .as_ref()
                            .and_then(|x| x.get("code"))
                            .is_some_and(|c| *c == async_graphql::Value::from("UNAUTHENTICATED"))
                    }) {
                        conn.revoked();
                    }
                    capped(response, max_bytes, &trace_id)
                })
                .boxed();
        }
        let timeout = state.limits.request_timeout;
        let response = match tokio::time::timeout(timeout, state.schema.execute(request)).await {
            Ok(mut response) => {
                let (_, outcome) = gate::label_errors(&mut response, &trace_id);
                state.metrics.observe(
                    operation.as_deref(),
                    &outcome,
                    started.elapsed().as_secs_f64(),
                );
                capped(response, state.limits.max_response_bytes, &trace_id)
            }
            Err(_) => {
                tracing::warn!(trace_id = %trace_id, "WebSocket operation timed out");
                state
                    .metrics
                    .observe(operation.as_deref(), "TIMEOUT", timeout.as_secs_f64());
                refused(
                    Reject::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "TIMEOUT",
                        format!(
                            "the operation took longer than {} s and was cancelled (nothing was committed)",
                            timeout.as_secs_f64()
                        ),
                    ),
                    &trace_id,
                )
            }
        };
        one(response)
    }
}

fn too_many(per: &str, max: usize) -> Reject {
    Reject::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        format!("at most {max} subscriptions may be open at once per {per}"),
    )
    .with("limit", serde_json::json!(max))
    .with(
        "kind",
        serde_json::json!(format!("subscriptions per {per}")),
    )
}

/// The response, or PAYLOAD_TOO_LARGE when its JSON would exceed `max_bytes`.
fn capped(response: Response, max_bytes: usize, trace_id: &str) -> Response {
    let size = serde_json::to_vec(&response).map(|v| v.len()).unwrap_or(0);
    if size <= max_bytes {
        return response;
    }
    refused(gate::response_too_large(size, max_bytes), trace_id)
}

impl Executor for Operations {
    fn execute(
        &self,
        request: async_graphql::Request,
    ) -> impl std::future::Future<Output = Response> + Send {
        let this = self.clone();
        async move {
            let mut responses = this.start(request).await;
            responses.next().await.unwrap_or_default()
        }
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        _session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let this = self.clone();
        stream::once(this.start(request)).flatten().boxed()
    }
}

/// Gives the errors of a protocol-level message (`connection_error`, `error`: those the
/// protocol handler writes itself, outside any operation's response) a `code` and a
/// `traceId`, as every error has; the trace id is logged with the message. A
/// `connection_error` answers a refused `connection_init` and takes its code from `refusal`.
/// Operation results (`next`, `data`) were labelled by [`gate::label_errors`] already.
fn labelled(text: String, refusal: Option<InitRefusal>) -> String {
    let connection_error = text.starts_with(r#"{"type":"connection_error""#);
    if !(connection_error || text.starts_with(r#"{"type":"error""#)) {
        return text;
    }
    let Ok(mut message) = serde_json::from_str::<serde_json::Value>(&text) else {
        return text;
    };
    let trace_id = new_trace_id();
    let code = match refusal {
        Some(r) if connection_error => r.error_code(),
        _ => "BAD_REQUEST",
    };
    let label = |error: &mut serde_json::Value| {
        let Some(error) = error.as_object_mut() else {
            return;
        };
        let ext = error
            .entry("extensions")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(ext) = ext.as_object_mut() {
            ext.entry("code").or_insert_with(|| code.into());
            ext.entry("traceId")
                .or_insert_with(|| trace_id.clone().into());
        }
    };
    match message.get_mut("payload") {
        Some(serde_json::Value::Array(errors)) => errors.iter_mut().for_each(label),
        Some(error) => label(error),
        None => return text,
    }
    tracing::info!(trace_id = %trace_id, message = %message, "WebSocket protocol error");
    message.to_string()
}

/// Serves one WebSocket connection.
pub async fn serve(
    state: AppState,
    protocol: async_graphql::http::WebSocketProtocols,
    socket: WebSocket,
) {
    let (mut sink, source) = socket.split();
    let (close_tx, mut close_rx) = tokio::sync::watch::channel(None);
    let conn = Arc::new(Conn {
        secret: OnceLock::new(),
        init_received: AtomicBool::new(false),
        initialised: AtomicBool::new(false),
        refusal: OnceLock::new(),
        subscriptions: AtomicUsize::new(0),
        close: close_tx,
    });
    let reader = conn.clone();
    let input = source
        .take_while(move |res| {
            if let Err(e) = res {
                // tungstenite's capacity error: a message over `--max-body-bytes`.
                let text = e.to_string();
                if text.contains("Message too long") || text.contains("Space limit exceeded") {
                    reader.close(TOO_BIG_CLOSE, "message too big");
                }
            }
            std::future::ready(res.is_ok())
        })
        .filter_map(|msg| {
            std::future::ready(match msg {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => Some(m.into_data()),
                _ => None,
            })
        });
    let on_init = {
        let db = state.db.clone();
        let conn = conn.clone();
        let check_within = state.limits.ws_init_timeout;
        move |payload: serde_json::Value| async move {
            conn.init_received.store(true, Ordering::Relaxed);
            let refuse = |refusal: InitRefusal, message: String| {
                let _ = conn.refusal.set(refusal);
                async_graphql::Error::new(message)
            };
            let Some(secret) = credential(&payload) else {
                return Err(refuse(
                    InitRefusal::Credential,
                    format!("{FORBIDDEN_PREFIX}connection_init carries no API key"),
                ));
            };
            // Bounded like the handshake itself: a database that does not answer gets the
            // client a 1013 to retry on, not a socket that hangs.
            let checked = tokio::time::timeout(
                check_within,
                keys::authenticate_cached(&db.read, &db.bus, &secret),
            )
            .await
            .unwrap_or_else(|_| {
                Err(AppError::Internal(anyhow::anyhow!(
                    "the credential look-up took longer than {check_within:?}"
                )))
            });
            if let Err(e) = checked {
                let refusal = InitRefusal::of(&e);
                if refusal == InitRefusal::Credential {
                    return Err(refuse(
                        refusal,
                        format!("{FORBIDDEN_PREFIX}{}", e.message()),
                    ));
                }
                tracing::error!(error = ?e, "connection_init: cannot check the credential");
                return Err(refuse(refusal, UNAVAILABLE_REASON.to_string()));
            }
            let _ = conn.secret.set(secret);
            conn.initialised.store(true, Ordering::Relaxed);
            Ok(Data::default())
        }
    };
    let executor = Operations {
        state: state.clone(),
        conn: conn.clone(),
    };
    let transport_ws = protocol == async_graphql::http::WebSocketProtocols::GraphQLWS;
    let labeller = conn.clone();
    let outgoing = async_graphql::http::WebSocket::new(executor, input, protocol)
        .on_connection_init(on_init)
        .map(move |msg| match msg {
            WsMessage::Text(text) => {
                Message::Text(labelled(text, labeller.refusal.get().copied()).into())
            }
            WsMessage::Close(code, reason) => {
                let refusal = (!labeller.initialised.load(Ordering::Relaxed))
                    .then(|| labeller.refusal.get().copied())
                    .flatten();
                let code = if let Some(refusal) = refusal {
                    refusal.close_code()
                } else if code == 1002 && transport_ws {
                    // async-graphql closes an unparsable message with 1002; graphql-transport-ws
                    // says 4400 "Invalid message".
                    INVALID_MESSAGE_CLOSE
                } else {
                    code
                };
                Message::Close(Some(CloseFrame {
                    code,
                    reason: close_reason(&reason).into(),
                }))
            }
        });
    async_graphql::futures_util::pin_mut!(outgoing);
    let init_deadline = tokio::time::sleep(state.limits.ws_init_timeout);
    tokio::pin!(init_deadline);
    let mut init_pending = true;
    let mut bus = state.db.bus.subscribe();
    let mut bus_open = true;
    loop {
        tokio::select! {
            item = outgoing.next() => {
                let Some(item) = item else {
                    // The input ended; say why when there is a reason (a message too big, or
                    // a refused `connection_init` on the legacy protocol, which answers it
                    // with a `connection_error` message and no close frame of its own).
                    let pending = close_rx.borrow().clone().or_else(|| {
                        conn.refusal.get().map(|r| {
                            let reason = match r {
                                InitRefusal::Credential => "Forbidden",
                                InitRefusal::Unavailable => UNAVAILABLE_REASON,
                            };
                            (r.close_code(), reason.to_string())
                        })
                    });
                    if let Some((code, reason)) = pending {
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame { code, reason: reason.into() })))
                            .await;
                    }
                    break;
                };
                let closing = matches!(item, Message::Close(_));
                if sink.send(item).await.is_err() || closing {
                    break;
                }
            }
            _ = close_rx.changed() => {
                let (code, reason) = close_rx.borrow().clone().unwrap_or((FORBIDDEN_CLOSE, String::new()));
                // What the operations have to say about it (a subscription's UNAUTHENTICATED)
                // goes out before the close frame.
                for _ in 0..64 {
                    match tokio::time::timeout(std::time::Duration::from_millis(100), outgoing.next()).await {
                        Ok(Some(item)) if !matches!(item, Message::Close(_)) => {
                            if sink.send(item).await.is_err() {
                                return;
                            }
                        }
                        _ => break,
                    }
                }
                let _ = sink
                    .send(Message::Close(Some(CloseFrame { code, reason: reason.into() })))
                    .await;
                break;
            }
            _ = &mut init_deadline, if init_pending => {
                // The condition was read when this `select!` began: `connection_init` may have
                // arrived since, and its check has its own bound.
                init_pending = false;
                if conn.init_received.load(Ordering::Relaxed) {
                    continue;
                }
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: INIT_TIMEOUT_CLOSE,
                        reason: "Connection initialisation timeout".into(),
                    })))
                    .await;
                break;
            }
            msg = bus.recv(), if bus_open => {
                let recheck = match msg {
                    Ok(m) => matches!(m.message, BusMessage::Access { .. } | BusMessage::Resync),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        bus_open = false;
                        false
                    }
                };
                if let (true, Some(secret)) = (recheck, conn.secret.get()) {
                    let db = &state.db;
                    if let Err(AppError::Unauthenticated) =
                        keys::authenticate_cached(&db.read, &db.bus, secret).await
                    {
                        conn.revoked();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn connection_init_takes_the_key_at_the_top_or_in_headers() {
        for payload in [
            json!({ "authorization": "Bearer k1" }),
            json!({ "Authorization": "Token k1" }),
            json!({ "x-api-key": "k1" }),
            json!({ "apiKey": "k1" }),
            json!({ "headers": { "Authorization": "Bearer k1" } }),
            json!({ "headers": { "x-api-key": "k1" } }),
            json!({ "Headers": { "authorization": "bearer  k1 " } }),
        ] {
            assert_eq!(credential(&payload).as_deref(), Some("k1"), "{payload}");
        }
        for payload in [
            json!({}),
            json!(null),
            json!({ "headers": {} }),
            json!({ "headers": "Bearer k1" }),
            json!({ "headers": { "Authorization": "Basic k1" } }),
            json!({ "authorization": "Basic k1", "headers": { "authorization": "Bearer k2" } }),
        ] {
            assert_eq!(credential(&payload), None, "{payload}");
        }
    }

    #[test]
    fn protocol_errors_get_a_code_and_a_trace_id() {
        // As async-graphql writes it: the tag first.
        let text = labelled(
            r#"{"type":"connection_error","payload":{"message":"Forbidden: no key"}}"#.into(),
            Some(InitRefusal::Credential),
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["payload"]["extensions"]["code"], "UNAUTHENTICATED");
        assert_eq!(
            v["payload"]["extensions"]["traceId"]
                .as_str()
                .unwrap()
                .len(),
            32
        );
        let next = r#"{"type":"next","id":"1","payload":{"errors":[{"message":"x"}]}}"#;
        assert_eq!(labelled(next.into(), None), next);
        let text = labelled(
            r#"{"type":"connection_error","payload":{"message":"Forbidden: look-up"}}"#.into(),
            Some(InitRefusal::Unavailable),
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["payload"]["extensions"]["code"], "INTERNAL");
    }

    #[test]
    fn a_refused_credential_closes_with_4403_and_a_failed_look_up_with_1013() {
        assert_eq!(
            InitRefusal::of(&AppError::Unauthenticated).close_code(),
            4403
        );
        let db_down = AppError::from(sea_orm::DbErr::ConnectionAcquire(
            sea_orm::ConnAcquireErr::Timeout,
        ));
        assert_eq!(InitRefusal::of(&db_down).close_code(), 1013);
        assert_eq!(InitRefusal::of(&db_down).error_code(), "INTERNAL");
    }
}
