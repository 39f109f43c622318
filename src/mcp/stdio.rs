//! `memspace mcp`: an MCP server on stdin/stdout that forwards every message to a running
//! Memspace's `/mcp`, for clients that can only launch a command. It relays JSON-RPC messages
//! both ways with rmcp's own transports (stdio on one side, Streamable HTTP with the key on
//! the other) and holds no logic: the remote server negotiates, authorises and answers.
use rmcp::model::{ClientJsonRpcMessage, ErrorCode, ErrorData, RequestId, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{IntoTransport, StreamableHttpClientTransport, Transport};
use rmcp::{RoleClient, RoleServer};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct McpArgs {
    /// The Memspace server to forward to (its base URL, or the full `/mcp` URL).
    #[arg(long, env = "MEMSPACE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An API key or space token.
    #[arg(long, env = "MEMSPACE_KEY", hide_env_values = true)]
    pub key: String,
}

/// The `/mcp` endpoint of a server given by its base URL or by the endpoint itself.
pub fn endpoint(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/mcp") {
        url.to_string()
    } else {
        format!("{url}/mcp")
    }
}

pub async fn run(args: McpArgs) -> anyhow::Result<()> {
    let config =
        StreamableHttpClientTransportConfig::with_uri(endpoint(&args.url)).auth_header(args.key);
    let mut remote = StreamableHttpClientTransport::from_config(config);
    let mut local =
        IntoTransport::<RoleServer, _, _>::into_transport(rmcp::transport::stdio_pipes());
    tracing::info!(url = %endpoint(&args.url), "forwarding MCP from stdio");
    // A request the server refused at the HTTP level (a revoked key: 401) still gets an answer,
    // so the client sees the code instead of waiting for its timeout.
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel::<ServerJsonRpcMessage>();
    // Once the server has closed the session (it may do so the moment a key is revoked, while
    // a request is still on its way), requests in flight still get their refusal and later
    // ones an error at once; the relay ends when the client closes stdin.
    let mut remote_open = true;
    let refused_auth = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        tokio::select! {
            from_client = local.receive() => match from_client {
                Some(ClientJsonRpcMessage::Request(r)) if !remote_open => {
                    let auth = refused_auth.load(std::sync::atomic::Ordering::Relaxed);
                    if local.send(closed(r.id.clone(), auth)).await.is_err() {
                        break;
                    }
                }
                Some(_) if !remote_open => {}
                // Sends run concurrently: a slow tool call must not hold up a cancellation.
                Some(m) => {
                    let id = match &m {
                        ClientJsonRpcMessage::Request(r) => Some(r.id.clone()),
                        _ => None,
                    };
                    let sent = Transport::<RoleClient>::send(&mut remote, m);
                    let failed = failed_tx.clone();
                    let refused_auth = refused_auth.clone();
                    tokio::spawn(async move {
                        if let Err(e) = sent.await {
                            tracing::warn!(error = %e, "forwarding to the server failed");
                            if let Some(id) = id {
                                let (answer, auth) = refused(id, &e);
                                if auth {
                                    refused_auth.store(true, std::sync::atomic::Ordering::Relaxed);
                                }
                                let _ = failed.send(answer);
                            }
                        }
                    });
                }
                None => break,
            },
            Some(answer) = failed_rx.recv() => {
                if local.send(answer).await.is_err() {
                    break;
                }
            },
            from_server = Transport::<RoleClient>::receive(&mut remote), if remote_open => match from_server {
                Some(m) => {
                    if let Err(e) = local.send(m).await {
                        tracing::warn!(error = %e, "writing to stdout failed");
                        break;
                    }
                }
                None => {
                    tracing::warn!("the server closed the MCP connection");
                    remote_open = false;
                }
            },
        }
    }
    let _ = Transport::<RoleClient>::close(&mut remote).await;
    let _ = local.close().await;
    Ok(())
}

/// The JSON-RPC error answering a request the server could not be reached with, and whether
/// it was the key: `data.code` is UNAUTHENTICATED when the server refused the key, as `/mcp`
/// itself says.
fn refused(id: RequestId, err: &dyn std::error::Error) -> (ServerJsonRpcMessage, bool) {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    let auth = chain.contains("401") || chain.to_ascii_lowercase().contains("auth");
    let reason = format!("the Memspace server could not be reached: {chain}");
    (answer(id, auth, reason), auth)
}

/// The answer to a request sent after the server closed the session: UNAUTHENTICATED when it
/// had refused the key, else UNAVAILABLE.
fn closed(id: RequestId, auth: bool) -> ServerJsonRpcMessage {
    answer(
        id,
        auth,
        "the Memspace server closed the MCP session".into(),
    )
}

/// UNAUTHENTICATED when the key was refused, else UNAVAILABLE with `reason`.
fn answer(id: RequestId, auth: bool, reason: String) -> ServerJsonRpcMessage {
    let (code, message) = if auth {
        (
            "UNAUTHENTICATED",
            "a valid API key or space token is required".to_string(),
        )
    } else {
        ("UNAVAILABLE", reason)
    };
    ServerJsonRpcMessage::error(
        ErrorData::new(ErrorCode(-32001), message, Some(json!({ "code": code }))),
        Some(id),
    )
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn the_endpoint_is_found_from_a_base_url_or_given_whole() {
        assert_eq!(endpoint("http://h:1"), "http://h:1/mcp");
        assert_eq!(endpoint("http://h:1/"), "http://h:1/mcp");
        assert_eq!(endpoint("http://h:1/mcp"), "http://h:1/mcp");
    }
}
