//! The HTTP surface: `/graphql` (POST, GET, GraphiQL, and a WebSocket upgrade for
//! subscriptions, the same transport as `/graphql/ws`), `/healthz`, `/readyz`, `/metrics`;
//! `/mcp` (the Model Context Protocol, see `crate::mcp`); authentication, limits, rate limiting,
//! timeouts, tracing and metrics around every request.
//!
//! GraphQL over HTTP: POST takes `application/json` (or `application/graphql`); GET takes the
//! query string, for queries only (a mutation gets 405). Responses are `application/json`, or
//! `application/graphql-response+json` when the client asks for it — then a request that could
//! not be executed (parse or validation error) gets 400, as that media type requires. Malformed
//! requests get 400 with a GraphQL error body; nothing answers 500.
use std::time::Instant;

use async_graphql::parser::types::OperationType;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::trace::TraceLayer;
use tracing::Instrument;

pub mod gate;
pub mod graphiql;
pub mod limits;
pub mod metrics;
pub mod state;
pub mod trace;
pub mod ws;

pub use state::{AppState, ServerLimits};

use gate::Reject;
use memspace_core::error::AppError;
use memspace_domain::auth as keys;
use trace::{new_trace_id, operation_name_of};

pub fn router(state: AppState) -> Router {
    let mcp = Router::new()
        .route_service("/mcp", crate::mcp::service(&state))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            mcp_guard,
        ));
    Router::new()
        .merge(mcp)
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/assets/{file}", get(graphiql::asset))
        .route("/graphql/ws", get(graphql_ws))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    let read = state.db.read.ping().await;
    let write = state.db.write.ping().await;
    match (read, write) {
        (Ok(()), Ok(())) if state.db.bus.ready() => (StatusCode::OK, "ready").into_response(),
        (Ok(()), Ok(())) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "event listener reconnecting",
        )
            .into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response(),
    }
}

/// `GET /graphql/ws`: subscriptions over graphql-transport-ws (and the legacy
/// subscriptions-transport-ws, subprotocol `graphql-ws`). `GET /graphql` with an upgrade
/// request lands here too. The key comes in `connection_init`'s payload
/// (`{"authorization": "Bearer <key>"}`, or `"Token <key>"`, or `{"x-api-key": "<key>"}`, or
/// any of those inside `{"headers": {…}}`); none or a bad one closes the socket with 4403.
async fn graphql_ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    upgrade_to_graphql_ws(state, &headers, upgrade)
}

/// The one WebSocket entry of both paths: the same protocol choice, the same transport (and so
/// the same gate, limits, init timeout and subscription caps).
fn upgrade_to_graphql_ws(
    state: AppState,
    headers: &HeaderMap,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    use std::str::FromStr;
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|list| {
            list.split(',')
                .find_map(|p| async_graphql::http::WebSocketProtocols::from_str(p.trim()).ok())
        })
        .unwrap_or(async_graphql::http::WebSocketProtocols::GraphQLWS);
    // A message is held to the HTTP body limit; a bigger one closes the socket with 1009.
    let max = state.limits.max_body_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| ws::serve(state, protocol, socket))
}

/// Whether the request asks to become a WebSocket (`Upgrade: websocket`).
fn wants_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&state.db).await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

fn too_large(limit: usize) -> Reject {
    Reject::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

/// Reads and decodes a POST body into a GraphQL request.
async fn decode_post(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<async_graphql::Request, Reject> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(too_large(limit));
        }
    }
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_big = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_big {
            too_large(limit)
        } else {
            Reject::bad_request(format!("could not read the request body: {e}"))
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    match media.as_str() {
        "application/json" | "application/graphql-response+json" | "" => decode_json(&bytes),
        "application/graphql" => {
            let query = std::str::from_utf8(&bytes)
                .map_err(|_| Reject::bad_request("the body is not valid UTF-8"))?;
            Ok(async_graphql::Request::new(query))
        }
        other => Err(Reject::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("content type {other:?} is not supported; send application/json"),
        )),
    }
}

fn decode_json(bytes: &[u8]) -> Result<async_graphql::Request, Reject> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Reject::bad_request(format!("the body is not valid JSON: {e}")))?;
    let obj = match value {
        serde_json::Value::Object(obj) => obj,
        serde_json::Value::Array(_) => {
            return Err(Reject::bad_request(
                "batched requests are not supported; send one operation per request",
            ))
        }
        _ => return Err(Reject::bad_request("the body must be a JSON object")),
    };
    match obj.get("query") {
        Some(serde_json::Value::String(_)) => {}
        Some(_) => return Err(Reject::bad_request("`query` must be a string")),
        None => return Err(Reject::bad_request("the request has no `query`")),
    }
    if let Some(v) = obj.get("variables") {
        if !(v.is_object() || v.is_null()) {
            return Err(Reject::bad_request("`variables` must be an object"));
        }
    }
    if let Some(v) = obj.get("operationName") {
        if !(v.is_string() || v.is_null()) {
            return Err(Reject::bad_request("`operationName` must be a string"));
        }
    }
    serde_json::from_value(serde_json::Value::Object(obj))
        .map_err(|e| Reject::bad_request(format!("invalid GraphQL request: {e}")))
}

async fn graphql_post(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match decode_post(&headers, body, state.limits.max_body_bytes).await {
        Ok(request) => execute(&state, &headers, request).await,
        Err(r) => reject(&state, &headers, r, &new_trace_id()),
    }
}

/// GET with a `query` parameter runs a query; a bare GET (a browser) gets GraphiQL; a
/// WebSocket upgrade serves subscriptions, as on `/graphql/ws`.
async fn graphql_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    upgrade: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Response {
    if wants_websocket(&headers) {
        return match upgrade {
            Ok(upgrade) => upgrade_to_graphql_ws(state, &headers, upgrade),
            Err(rejection) => rejection.into_response(),
        };
    }
    let raw = uri.query().unwrap_or_default();
    let has_query = raw.split('&').any(|kv| kv.starts_with("query="));
    if !has_query {
        let wants_html = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        if wants_html || raw.is_empty() {
            return graphiql::page().into_response();
        }
        return reject(
            &state,
            &headers,
            Reject::bad_request("the request has no `query` parameter"),
            &new_trace_id(),
        );
    }
    let request = match async_graphql::http::parse_query_string(raw) {
        Ok(r) => r,
        Err(e) => {
            return reject(
                &state,
                &headers,
                Reject::bad_request(format!("invalid GraphQL GET request: {e}")),
                &new_trace_id(),
            )
        }
    };
    if is_mutation(&request) {
        let mut resp = reject(
            &state,
            &headers,
            Reject::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "mutations must be sent with POST",
            ),
            &new_trace_id(),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    execute(&state, &headers, request).await
}

fn is_mutation(request: &async_graphql::Request) -> bool {
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    doc.operations.iter().any(|(name, op)| {
        op.node.ty == OperationType::Mutation
            && match (&request.operation_name, name) {
                (Some(wanted), Some(name)) => wanted == name.as_str(),
                _ => true,
            }
    })
}

/// Whether the client asked for `application/graphql-response+json`.
fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/graphql-response+json"))
}

fn content_type(headers: &HeaderMap) -> HeaderValue {
    if wants_graphql_response(headers) {
        HeaderValue::from_static("application/graphql-response+json; charset=utf-8")
    } else {
        HeaderValue::from_static("application/json; charset=utf-8")
    }
}

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    request: async_graphql::Request,
) -> Response {
    let trace_id = new_trace_id();
    let started = Instant::now();
    let operation = request
        .operation_name
        .clone()
        .or_else(|| operation_name_of(&request.query));
    let span = tracing::info_span!(
        "graphql",
        trace_id = %trace_id,
        operation = operation.as_deref().unwrap_or("")
    );
    let (response, outcome) = run(state, headers, request, &trace_id)
        .instrument(span)
        .await;
    state.metrics.observe(
        operation.as_deref(),
        &outcome,
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    trace_id: &str,
) -> (Response, String) {
    let (principal, request) = match gate::admit(state, header_credential(headers), request).await {
        Ok(admitted) => admitted,
        Err(r) => {
            let code = r.code.to_string();
            let resp = if r.code == "UNAUTHENTICATED" {
                unauthenticated(headers, trace_id)
            } else {
                error_response(headers, r, trace_id)
            };
            return (resp, code);
        }
    };
    let request = gate::attach(state, request, principal);
    let executed =
        tokio::time::timeout(state.limits.request_timeout, state.schema.execute(request)).await;
    let mut response = match executed {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!("request timed out");
            let r = Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TIMEOUT",
                format!(
                    "the request took longer than {} s and was cancelled (nothing was committed)",
                    state.limits.request_timeout.as_secs_f64()
                ),
            );
            return (error_response(headers, r, trace_id), "TIMEOUT".into());
        }
    };
    let (request_error, outcome) = gate::label_errors(&mut response, trace_id);
    let status = if request_error && wants_graphql_response(headers) {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let serialized = if request_error {
        // A request that never executed (parse or validation failure) has no `data` entry.
        serde_json::to_value(&response).and_then(|mut v| {
            if let Some(obj) = v.as_object_mut() {
                obj.remove("data");
            }
            serde_json::to_vec(&v)
        })
    } else {
        serde_json::to_vec(&response)
    };
    let body = match serialized {
        Ok(b) if b.len() > state.limits.max_response_bytes => {
            let r = gate::response_too_large(b.len(), state.limits.max_response_bytes);
            return (
                error_response(headers, r, trace_id),
                "PAYLOAD_TOO_LARGE".into(),
            );
        }
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "response serialisation failed");
            let r = Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "INTERNAL",
                "internal error",
            );
            return (error_response(headers, r, trace_id), "INTERNAL".into());
        }
    };
    let resp = (
        status,
        [(header::CONTENT_TYPE, content_type(headers))],
        body,
    )
        .into_response();
    (resp, outcome)
}

/// `Some(seconds to wait)` when the principal's key is over its rate limit.
fn retry_after(state: &AppState, principal: &memspace_core::principal::Principal) -> Option<u64> {
    let limiter = state.rate_limiter.as_ref()?;
    let not_until = limiter.check_key(&principal.credential_id).err()?;
    let wait = not_until.wait_time_from(governor::clock::Clock::now(
        &governor::clock::DefaultClock::default(),
    ));
    Some(wait.as_secs_f64().ceil().max(1.0) as u64)
}

/// In front of `/mcp`: the credential checked in its current state on every request (401 with
/// `WWW-Authenticate: Bearer` when missing or invalid), the key's rate limit, and the caller
/// attached for the MCP handlers. The body limit is rmcp's, set from the same `max_body_bytes`.
async fn mcp_guard(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let trace_id = new_trace_id();
    let Some(secret) = header_credential(request.headers()).map(str::to_string) else {
        return mcp_unauthenticated(&state, &trace_id);
    };
    let principal = match keys::authenticate_cached(&state.db.read, &state.db.bus, &secret).await {
        Ok(p) => p,
        Err(AppError::Unauthenticated) => return mcp_unauthenticated(&state, &trace_id),
        Err(e) => {
            tracing::error!(error = ?e, trace_id, "authentication failed");
            let message = "the server cannot check credentials right now";
            return mcp_reject(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "INTERNAL",
                message,
                &trace_id,
            );
        }
    };
    if let Some(secs) = retry_after(&state, &principal) {
        let message = format!("too many requests for this key; retry in {secs} s");
        let mut resp = mcp_reject(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            &message,
            &trace_id,
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&secs.to_string()).unwrap_or(HeaderValue::from_static("1")),
        );
        return resp;
    }
    request.extensions_mut().insert(crate::mcp::Caller {
        principal,
        secret: secret.into(),
    });
    next.run(request).await
}

/// A request refused before MCP: a JSON-RPC error body whose `data` carries the code.
fn mcp_unauthenticated(state: &AppState, trace_id: &str) -> Response {
    let message = AppError::Unauthenticated.message();
    let mut resp = mcp_reject(
        state,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        &message,
        trace_id,
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

fn mcp_reject(
    state: &AppState,
    status: StatusCode,
    code: &str,
    message: &str,
    trace_id: &str,
) -> Response {
    state.metrics.observe(Some("mcp"), code, 0.0);
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": -32001,
            "message": message,
            "data": { "code": code, "traceId": trace_id },
        }
    });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

fn unauthenticated(headers: &HeaderMap, trace_id: &str) -> Response {
    let r = Reject::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        AppError::Unauthenticated.message(),
    );
    let mut resp = error_response(headers, r, trace_id);
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

fn reject(state: &AppState, headers: &HeaderMap, r: Reject, trace_id: &str) -> Response {
    state.metrics.observe(None, r.code, 0.0);
    error_response(headers, r, trace_id)
}

fn error_response(headers: &HeaderMap, r: Reject, trace_id: &str) -> Response {
    let mut extensions = r.extensions;
    extensions.insert("code".into(), r.code.into());
    extensions.insert("traceId".into(), trace_id.into());
    let retry_after = extensions.get("retryAfter").and_then(|v| v.as_u64());
    let body = serde_json::json!({
        "errors": [{ "message": r.message, "extensions": extensions }]
    });
    let mut resp = (
        r.status,
        [(header::CONTENT_TYPE, content_type(headers))],
        body.to_string(),
    )
        .into_response();
    if let Some(secs) = retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish.
/// A connection that has not sent a request's headers within `header_read_timeout` (a slow
/// client holding a socket) is closed; WebSocket upgrades are served.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    header_read_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Without TCP_NODELAY a response written in parts (the SSE events of an MCP
                // answer, a chunked body) waits for the client's delayed ACK: +40 ms per call.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set");
                }
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    graceful.shutdown().await;
}

/// Resolves on SIGINT or SIGTERM, for graceful shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
}

/// The credential of a request: `Authorization: Bearer K`, `Authorization: Token K` or `X-API-Key: K`.
fn header_credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        let (scheme, rest) = value.split_once(char::is_whitespace)?;
        let rest = rest.trim();
        if (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
            && !rest.is_empty()
        {
            return Some(rest);
        }
        return None;
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_three_header_forms_are_read() {
        for (name, value) in [
            ("authorization", "Bearer abc"),
            ("authorization", "bearer  abc "),
            ("authorization", "Token abc"),
            ("x-api-key", "abc"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            assert_eq!(header_credential(&h), Some("abc"), "{name}: {value}");
        }
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(header_credential(&h), None);
        assert_eq!(header_credential(&HeaderMap::new()), None);
    }
}
