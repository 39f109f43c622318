//! The Model Context Protocol transport: MCP's Streamable HTTP at `POST/GET /mcp` (rmcp, the
//! official Rust SDK), and `memspace mcp`, a stdio server that forwards to it.
//!
//! Like the GraphQL resolvers this is a thin adapter: every tool, resource and prompt parses its
//! arguments, calls `memspace_domain` (which checks access, validates, audits cross-tenant
//! reads and runs the transaction) and renders the result. Errors keep the GraphQL codes.
//!
//! Authentication is the HTTP layer's (`crate::http::mcp_guard`): every POST and GET is
//! checked against the credential's current state, rate-limited per key and size-capped like
//! `/graphql`; the resolved [`Caller`] travels in the request's extensions, which rmcp hands
//! to every handler.
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    ErrorData, GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams, ProtocolVersion,
    ReadResourceRequestParams, ReadResourceResponse, ResourceUpdatedNotificationParam,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool_handler, RoleServer, ServerHandler};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::http::metrics::Metrics;
use crate::http::state::{AppState, ServerLimits};
use memspace_core::error::AppError;
use memspace_domain::db::Db;
use memspace_engine::vector_index::VectorIndex;

mod caller;
mod errors;
mod prompts;
mod resources;
pub mod stdio;
mod tools;
mod uri;
mod views;
mod watch;

use caller::caller;
pub use caller::Caller;

/// What every session's handler shares.
#[derive(Clone)]
struct Shared {
    db: Db,
    index: Arc<VectorIndex>,
    recall: memspace_domain::search::Recall,
    limits: Arc<ServerLimits>,
    metrics: Arc<Metrics>,
}

/// One MCP session's handler (one per session in legacy mode, one per request when stateless).
#[derive(Clone)]
pub struct Memspace {
    shared: Shared,
    tool_router: ToolRouter<Memspace>,
    /// Legacy `resources/subscribe` watchers of this session, by URI; dropping one stops it.
    subscriptions: Arc<Mutex<HashMap<String, DropGuard>>>,
}

impl Memspace {
    fn new(shared: Shared) -> Memspace {
        Memspace {
            shared,
            tool_router: Self::tools(),
            subscriptions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn db(&self) -> &Db {
        &self.shared.db
    }
}

/// Records one MCP operation in the request metrics, as `mcp:<name>`.
fn observe(metrics: &Metrics, name: &str, outcome: &str, started: Instant) {
    metrics.observe(
        Some(&format!("mcp:{name}")),
        outcome,
        started.elapsed().as_secs_f64(),
    );
}

const INSTRUCTIONS: &str = "Memspace stores memories in shared spaces. Use search_memories \
before answering from memory, add_memories to remember facts (one or many, with tags), \
recent_memories for what a space knows so far, and list_spaces/get_space to find where to write. \
Errors carry a code: NOT_FOUND (missing or not readable), FORBIDDEN (read-only access), \
VALIDATION_ERROR (with the bad field), DUPLICATE (with existingId), CONFLICT (stale \
expected_version; re-read and retry).";

impl Memspace {
    fn info() -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_prompts()
                .build(),
        )
        .with_server_info(Implementation::new("memspace", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    fn protocol_versions() -> &'static [ProtocolVersion] {
        &[
            ProtocolVersion::V_2026_07_28,
            ProtocolVersion::V_2025_11_25,
            ProtocolVersion::V_2025_06_18,
            ProtocolVersion::V_2025_03_26,
            ProtocolVersion::V_2024_11_05,
        ]
    }

    /// `subscriptions/listen` (2026-07-28): resource updates only.
    fn accepted_filter(requested: &SubscriptionFilter) -> SubscriptionFilter {
        let mut accepted = requested.supported_by(&Self::info().capabilities);
        accepted.tools_list_changed = None;
        accepted.prompts_list_changed = None;
        accepted.resources_list_changed = None;
        accepted
    }
}

/// The `/mcp` service: stateless for 2026-07-28 clients, sessions for earlier revisions
/// (their `resources/subscribe` notifications need the session's GET stream).
pub fn service(state: &AppState) -> StreamableHttpService<Memspace, LocalSessionManager> {
    let shared = Shared {
        db: state.db.clone(),
        index: state.index.clone(),
        recall: state.recall.clone(),
        limits: state.limits.clone(),
        metrics: state.metrics.clone(),
    };
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_json_response(true)
        .with_max_request_body_bytes(state.limits.max_body_bytes)
        // Every request carries a key, so a rebound DNS name cannot reach anything without
        // one; the server is meant to be reached by its public name.
        .disable_allowed_hosts();
    StreamableHttpService::new(
        move || Ok(Memspace::new(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Runs a resource or prompt operation for the request's caller; errors become JSON-RPC errors
/// carrying the code.
async fn answer<T, F, Fut>(
    server: &Memspace,
    name: &str,
    ctx: &RequestContext<RoleServer>,
    body: F,
) -> Result<T, ErrorData>
where
    F: FnOnce(Caller) -> Fut,
    Fut: std::future::Future<Output = Result<T, AppError>>,
{
    let started = Instant::now();
    let trace_id = errors::new_trace_id();
    let outcome = match caller(ctx) {
        Ok(who) => body(who).await,
        Err(e) => Err(e),
    };
    let code = outcome.as_ref().err().map_or("ok", AppError::code);
    observe(&server.shared.metrics, name, code, started);
    outcome.map_err(|e| errors::rpc_error(&e, &trace_id))
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Memspace {
    fn get_info(&self) -> ServerConfig {
        Memspace::info()
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(Memspace::protocol_versions())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let cursor = request.and_then(|r| r.cursor);
        answer(self, "resources/list", &ctx, |who| async move {
            resources::list(self.db(), &who, cursor).await
        })
        .await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        answer(self, "resources/read", &ctx, |who| async move {
            resources::read(self.db(), &who, &request.uri).await
        })
        .await
        .map(Into::into)
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(Memspace::accepted_filter(requested))
    }

    /// `subscriptions/listen` (2026-07-28): notifies the listed space resources until the
    /// client closes the stream or loses access.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let ctx = context.request_context().clone();
        let uris = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        let watch = answer(self, "subscriptions/listen", &ctx, |who| async move {
            let spaces = uris
                .iter()
                .map(|u| resources::space_of(u))
                .collect::<Result<Vec<_>, _>>()?;
            watch::Watch::start(self.db(), &who.principal, who.secret.clone(), spaces).await
        })
        .await?;
        let sink = context.sink().clone();
        let trace_id = errors::new_trace_id();
        tokio::select! {
            ended = watch.run(|uri| {
                let sink = sink.clone();
                async move { sink.notify_resource_updated(uri).await.is_ok() }
            }) => ended.map_err(|e| errors::rpc_error(&e, &trace_id)),
            _ = context.cancelled() => Ok(()),
        }
    }

    /// `resources/subscribe` (before 2026-07-28): notifies over the session's stream until
    /// unsubscribed, the session ends, or access is lost.
    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let uri = request.uri;
        let space = resources::space_of(&uri);
        let watch = answer(self, "resources/subscribe", &ctx, |who| async move {
            let space = space?;
            watch::Watch::start(self.db(), &who.principal, who.secret.clone(), vec![space]).await
        })
        .await?;
        let stop = CancellationToken::new();
        let peer = ctx.peer.clone();
        let uri_done = uri.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = watch.run(|uri| {
                    let peer = peer.clone();
                    async move {
                        peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                            .await
                            .is_ok()
                    }
                }) => {
                    if let Err(e) = ended {
                        tracing::info!(uri = %uri_done, code = e.code(), "resource subscription ended");
                    }
                }
                _ = token.cancelled() => {}
            }
        });
        let mut subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        subs.insert(request_uri_key(&uri), stop.drop_guard());
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        subs.remove(&request_uri_key(&request.uri));
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(prompts::list())
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        answer(self, "prompts/get", &ctx, |who| async move {
            prompts::get(
                self.db(),
                &self.shared.index,
                &self.shared.recall,
                &who,
                &request.name,
                &request.arguments,
            )
            .await
        })
        .await
        .map(Into::into)
    }
}

fn request_uri_key(uri: &str) -> String {
    uri.trim_end_matches('/').to_string()
}
