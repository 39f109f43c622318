//! The GraphQL-over-WebSocket transport (graphql-transport-ws): authenticates `connection_init`
//! and runs the schema's subscriptions over the socket.
use async_graphql::futures_util::stream::StreamExt;
use async_graphql::futures_util::SinkExt;
use async_graphql::http::WsMessage;
use async_graphql::Data;
use axum::extract::ws::{CloseFrame, Message, WebSocket};

use super::state::AppState;
use memspace_domain::auth as keys;
use memspace_graphql::context::Loaders;
use memspace_graphql::memories::subscription::WsCredential;

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
