//! Who calls an MCP request: the principal the HTTP layer resolved from its credential.
use std::sync::Arc;

use rmcp::service::RequestContext;
use rmcp::RoleServer;

use memspace_core::error::AppError;
use memspace_core::principal::Principal;

/// Who is calling: resolved from the request's credential by the HTTP layer, per request.
#[derive(Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The credential itself, so long-lived resource subscriptions can re-check it.
    pub secret: Arc<str>,
}

/// The caller of a request, as attached by the HTTP layer.
pub fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, AppError> {
    ctx.extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
        .ok_or(AppError::Unauthenticated)
}
