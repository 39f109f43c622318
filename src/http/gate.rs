//! Admission of one GraphQL operation, the same for both transports: the credential's current
//! state (through the bus's principal cache, so revocations apply at once), the rate limit, NUL
//! characters, and the query limits (depth, aliases, complexity, fragment nesting). HTTP runs
//! it per request, the WebSocket transport per operation on the socket.
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use axum::http::StatusCode;

use super::limits;
use super::state::AppState;
use memspace_core::error::AppError;
use memspace_core::principal::Principal;
use memspace_domain::auth as keys;
use memspace_graphql::context::LoaderSlot;

/// A request-level failure, answered before any GraphQL execution.
pub struct Reject {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extensions besides `code` and `traceId`.
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Reject {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Reject {
            status,
            code,
            message: message.into(),
            extensions: serde_json::Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extensions.insert(key.to_string(), value);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Reject::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    /// The same failure as a GraphQL error (for the WebSocket transport).
    pub fn into_server_error(self, trace_id: &str) -> async_graphql::ServerError {
        let mut err = async_graphql::ServerError::new(self.message, None);
        let mut ext = async_graphql::ErrorExtensionValues::default();
        ext.set("code", self.code);
        ext.set("traceId", trace_id);
        for (k, v) in self.extensions {
            if let Ok(v) = async_graphql::Value::from_json(v) {
                ext.set(k, v);
            }
        }
        err.extensions = Some(ext);
        err
    }
}

/// Authenticates `secret` as it stands now and checks `request` against every limit. On
/// success the request carries its parsed document.
pub async fn admit(
    state: &AppState,
    secret: Option<&str>,
    mut request: async_graphql::Request,
) -> Result<(Principal, async_graphql::Request), Reject> {
    let Some(secret) = secret else {
        return Err(unauthenticated());
    };
    let principal = match keys::authenticate_cached(&state.db.read, &state.db.bus, secret).await {
        Ok(p) => p,
        Err(AppError::Unauthenticated) => return Err(unauthenticated()),
        Err(e) => {
            tracing::error!(error = ?e, "authentication failed");
            return Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "INTERNAL",
                "the server cannot check credentials right now",
            ));
        }
    };
    if let Some(limiter) = &state.rate_limiter {
        if let Err(not_until) = limiter.check_key(&principal.credential_id) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            return Err(Reject::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!("too many requests for this key; retry in {secs} s"),
            )
            .with("retryAfter", serde_json::json!(secs)));
        }
    }
    // PostgreSQL cannot store NUL characters; refuse them up front, on every backend alike.
    let nul_at = if request.query.contains('\0') {
        Some("query".to_string())
    } else {
        nul_path(&request.variables)
    };
    if let Some(field) = nul_at {
        return Err(Reject::new(
            StatusCode::OK,
            "VALIDATION_ERROR",
            format!("{field}: text must not contain NUL characters"),
        )
        .with("field", serde_json::json!(field)));
    }
    match limits::check(
        &request.query,
        request.operation_name.as_deref(),
        &request.variables,
        &state.limits.query,
        &state.documents,
    ) {
        // Parsed once: the engine executes this document instead of parsing the text again.
        Ok(Some(document)) => request.set_parsed_query(document),
        Ok(None) => {}
        Err(too) => {
            return Err(
                Reject::new(StatusCode::OK, "QUERY_TOO_COMPLEX", too.message())
                    .with("kind", serde_json::json!(too.kind))
                    .with("limit", serde_json::json!(too.limit))
                    .with("measured", serde_json::json!(too.measured)),
            )
        }
    }
    Ok((principal, request))
}

/// The per-operation data: the principal and fresh loaders (never shared between operations).
pub fn attach(
    state: &AppState,
    request: async_graphql::Request,
    principal: Principal,
) -> async_graphql::Request {
    let loaders = LoaderSlot::new(&state.db.read, Some(principal.clone()));
    request.data(principal).data(loaders)
}

fn unauthenticated() -> Reject {
    Reject::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        AppError::Unauthenticated.message(),
    )
}

/// The type of the operation a parsed document runs (None when it names none that exists).
pub fn operation_type(
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<OperationType> {
    match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(map), Some(name)) => map
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, op)| op.node.ty),
        (DocumentOperations::Multiple(map), None) if map.len() == 1 => {
            map.values().next().map(|op| op.node.ty)
        }
        _ => None,
    }
}

/// The path (`variables.input.content`, `variables.inputs[3].tags[0]`) of the first string
/// holding a NUL character, if any.
fn nul_path(vars: &async_graphql::Variables) -> Option<String> {
    fn walk(v: &async_graphql::Value, path: String) -> Option<String> {
        match v {
            async_graphql::Value::String(s) if s.contains('\0') => Some(path),
            async_graphql::Value::List(l) => l
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, format!("{path}[{i}]"))),
            async_graphql::Value::Object(o) => o.iter().find_map(|(k, v)| {
                if k.contains('\0') {
                    Some(path.clone())
                } else {
                    walk(v, format!("{path}.{k}"))
                }
            }),
            _ => None,
        }
    }
    vars.iter()
        .find_map(|(k, v)| walk(v, format!("variables.{k}")))
}

/// Gives every error of an executed response its `code` (the engine's own parse and validation
/// errors have none) and the trace id. Returns whether the request never executed (only
/// request errors, no data) and the outcome for metrics (first error's code, or `ok`).
pub fn label_errors(response: &mut async_graphql::Response, trace_id: &str) -> (bool, String) {
    let mut request_error = !response.errors.is_empty();
    for err in &mut response.errors {
        if !err.path.is_empty() {
            request_error = false;
        }
        let ext = err.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            // Parse and validation errors raised by the GraphQL engine itself.
            let code = if err.message.contains("nested too deep")
                || err.message.contains("too complex")
                || err.message.contains("recursion limit")
                || err.message.contains("recursion depth")
            {
                "QUERY_TOO_COMPLEX"
            } else {
                "GRAPHQL_VALIDATION_FAILED"
            };
            ext.set("code", code);
        }
        ext.set("traceId", trace_id);
    }
    let request_error = request_error && response.data == async_graphql::Value::Null;
    let outcome = response
        .errors
        .first()
        .and_then(|e| e.extensions.as_ref())
        .and_then(|x| match x.get("code") {
            Some(async_graphql::Value::String(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "ok".into());
    (request_error, outcome)
}

/// A response larger than the cap is replaced by this error.
pub fn response_too_large(size: usize, max_bytes: usize) -> Reject {
    Reject::new(
        StatusCode::OK,
        "PAYLOAD_TOO_LARGE",
        format!(
            "the response would be {size} bytes, above the limit of {max_bytes}; ask for fewer items or fields"
        ),
    )
    .with("kind", serde_json::json!("response"))
    .with("limit", serde_json::json!(max_bytes))
    .with("measured", serde_json::json!(size))
}
