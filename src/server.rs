//! The HTTP surface: `/graphql` (POST, GET, GraphiQL), `/healthz`; auth; tracing.
use std::time::Duration;

use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::OperationType;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::keys;
use crate::db::Db;
use crate::error::AppError;
use crate::schema::{AppSchema, Loaders};

#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub db: Db,
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn graphql_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    execute(&state, &headers, request.into_inner()).await
}

/// GET with a `query` parameter runs a query; a bare GET (a browser) gets GraphiQL.
async fn graphql_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let has_query = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("query=")));
    if !has_query {
        return Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .title("Memspace GraphiQL")
                .finish(),
        )
        .into_response();
    }
    let request = match async_graphql::http::parse_query_string(uri.query().unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("invalid GraphQL GET request: {e}"),
                &new_trace_id(),
            )
        }
    };
    if is_mutation(&request) {
        let mut resp = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "mutations must be sent with POST",
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

fn new_trace_id() -> String {
    Uuid::now_v7().simple().to_string()
}

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    request: async_graphql::Request,
) -> Response {
    let trace_id = new_trace_id();
    let span = tracing::info_span!(
        "graphql",
        trace_id = %trace_id,
        operation = request.operation_name.as_deref().unwrap_or("")
    );
    async {
        let Some(secret) = keys::credential(headers) else {
            return unauthenticated(&trace_id);
        };
        let principal = match keys::authenticate(&state.db.read, secret).await {
            Ok(p) => p,
            Err(AppError::Unauthenticated) => return unauthenticated(&trace_id),
            Err(e) => {
                tracing::error!(error = ?e, "authentication failed");
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "INTERNAL",
                    "the server cannot check credentials right now",
                    &trace_id,
                );
            }
        };
        let loaders = Loaders::new(&state.db.read, Some(principal.clone()));
        let request = request.data(principal).data(loaders);
        let mut response = state.schema.execute(request).await;
        for err in &mut response.errors {
            let ext = err.extensions.get_or_insert_with(Default::default);
            if ext.get("code").is_none() {
                // Parse and validation errors raised by the GraphQL engine itself.
                ext.set("code", "GRAPHQL_VALIDATION_FAILED");
            }
            ext.set("traceId", trace_id.as_str());
        }
        GraphQLResponse::from(response).into_response()
    }
    .instrument(span)
    .await
}

fn unauthenticated(trace_id: &str) -> Response {
    let mut resp = error_response(
        StatusCode::UNAUTHORIZED,
        AppError::Unauthenticated.code(),
        &AppError::Unauthenticated.message(),
        trace_id,
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

fn error_response(status: StatusCode, code: &str, message: &str, trace_id: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{
            "message": message,
            "extensions": { "code": code, "traceId": trace_id }
        }]
    });
    (status, Json(body)).into_response()
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
    tracing::info!("shutting down: finishing in-flight requests");
    // Give load balancers a moment; in-flight requests are drained by axum.
    tokio::time::sleep(Duration::from_millis(10)).await;
}
