//! GraphiQL, served from the binary: the page and its assets (GraphiQL 3.8.3 and React 18.3.1,
//! MIT-licensed, see `assets/graphiql/LICENSE.*`), gzip-compressed at rest. Nothing is fetched
//! from a CDN, so GraphiQL works on machines without internet access.
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

const GRAPHIQL_JS: &[u8] = include_bytes!("../../assets/graphiql/graphiql.min.js.gz");
const GRAPHIQL_CSS: &[u8] = include_bytes!("../../assets/graphiql/graphiql.min.css.gz");
const REACT_JS: &[u8] = include_bytes!("../../assets/graphiql/react.production.min.js.gz");
const REACT_DOM_JS: &[u8] = include_bytes!("../../assets/graphiql/react-dom.production.min.js.gz");

/// The GraphiQL page. Headers (your API key) go in its Headers pane and are kept in the
/// browser's local storage, never in the URL.
pub fn page() -> Html<&'static str> {
    Html(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <title>Memspace GraphiQL</title>
  <link rel="stylesheet" href="/graphql/assets/graphiql.min.css" />
  <style>body { margin: 0; } #graphiql { height: 100vh; }</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script src="/graphql/assets/react.production.min.js"></script>
  <script src="/graphql/assets/react-dom.production.min.js"></script>
  <script src="/graphql/assets/graphiql.min.js"></script>
  <script>
    const origin = window.location.origin;
    const fetcher = GraphiQL.createFetcher({
      url: origin + "/graphql",
      subscriptionUrl: origin.replace(/^http/, "ws") + "/graphql/ws",
    });
    ReactDOM.createRoot(document.getElementById("graphiql")).render(
      React.createElement(GraphiQL, {
        fetcher,
        isHeadersEditorEnabled: true,
        shouldPersistHeaders: true,
        defaultEditorToolsVisibility: "headers",
        defaultHeaders: '{\n  "Authorization": "Bearer <your API key>"\n}',
      })
    );
  </script>
</body>
</html>
"#,
    )
}

/// `/graphql/assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "graphiql.min.js" => (GRAPHIQL_JS, "application/javascript; charset=utf-8"),
        "graphiql.min.css" => (GRAPHIQL_CSS, "text/css; charset=utf-8"),
        "react.production.min.js" => (REACT_JS, "application/javascript; charset=utf-8"),
        "react-dom.production.min.js" => (REACT_DOM_JS, "application/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        body,
    )
        .into_response()
}
