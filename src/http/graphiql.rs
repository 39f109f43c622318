//! GraphiQL, served from the binary: the page and its assets (GraphiQL 3.8.3 and React 18.3.1,
//! MIT-licensed, see `assets/graphiql/LICENSE.*`), gzip-compressed at rest and sent compressed
//! to clients that accept gzip, decompressed (once, on first use) for those that do not.
//! Nothing is fetched from a CDN, so GraphiQL works on machines without internet access.
//!
//! The first tab holds a working Memspace example (the `memspace-example` JSON block of the
//! page: viewer, create a space, remember, search); until a key is in the Headers pane the
//! page says how to get one and sends nothing to the server.
use std::io::Read;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

const GRAPHIQL_JS: &[u8] = include_bytes!("../../assets/graphiql/graphiql.min.js.gz");
const GRAPHIQL_CSS: &[u8] = include_bytes!("../../assets/graphiql/graphiql.min.css.gz");
const REACT_JS: &[u8] = include_bytes!("../../assets/graphiql/react.production.min.js.gz");
const REACT_DOM_JS: &[u8] = include_bytes!("../../assets/graphiql/react-dom.production.min.js.gz");

/// The GraphiQL page. Headers (your API key) go in its Headers pane and are kept in the
/// browser's local storage, never in the URL.
pub fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <title>Memspace GraphiQL</title>
  <link rel="stylesheet" href="/graphql/assets/graphiql.min.css" />
  <style>
    body { margin: 0; display: flex; flex-direction: column; height: 100vh; font-family: system-ui, sans-serif; }
    #graphiql { flex: 1; min-height: 0; }
    #memspace-no-key { padding: 10px 16px; background: #fff8e1; border-bottom: 1px solid #e0c36a; font-size: 14px; line-height: 1.45; }
    #memspace-no-key[hidden] { display: none; }
    #memspace-no-key code { background: #f3ead0; padding: 0 3px; border-radius: 3px; }
  </style>
</head>
<body>
  <div id="memspace-no-key" role="status">
    <strong>No API key yet.</strong> Every request to <code>/graphql</code> needs one (the
    documentation pane fills in once it is set). Put it in the <em>Headers</em> pane below the
    editor as <code>{"Authorization": "Bearer &lt;key&gt;"}</code>.
    To get a key: the server's first start on an empty database prints an admin key
    (<code>admin api key: …</code>) or takes yours from <code>MEMSPACE_ADMIN_KEY</code>;
    <code>memspace admin create-key --org default</code> makes a new one from the shell; with a key, the
    <code>createApiKey</code> mutation makes keys for other users and agents.
  </div>
  <div id="graphiql">Loading GraphiQL…</div>
  <script id="memspace-example" type="application/json">
{
  "query": "# Welcome to Memspace: shared memory spaces for people and AI agents.\n#\n# 1. Put your API key in the Headers pane below: {\"Authorization\": \"Bearer <key>\"}\n# 2. Run the operations one at a time (the run button asks which): Viewer,\n#    CreateSpace, Remember (put the new space's id in the variables), Search.\n\nquery Viewer {\n  viewer {\n    principal {\n      __typename\n      ... on User { id name email isAdmin }\n      ... on Agent { id handle name }\n    }\n    organization { id handle name }\n    roles { id name }\n  }\n}\n\nmutation CreateSpace($name: String!) {\n  createSpace(input: { name: $name, tags: [\"getting-started\"] }) {\n    id\n    name\n    accessMode\n  }\n}\n\nmutation Remember($spaceId: ID!, $content: String!) {\n  createMemory(input: { spaceId: $spaceId, content: $content, tags: [\"hello\"] }) {\n    id\n    content\n    createdAt\n  }\n}\n\nquery Search($text: String!) {\n  searchMemories(input: { query: $text, limit: 5 }) {\n    score\n    chunk\n    memory { id content space { id name } }\n  }\n}\n",
  "variables": "{\n  \"name\": \"My first space\",\n  \"spaceId\": \"<the id CreateSpace returned>\",\n  \"content\": \"Memspace keeps what my agents learn, shared with my team.\",\n  \"text\": \"what do my agents learn\"\n}",
  "headers": "{\n  \"Authorization\": \"Bearer <your API key>\"\n}"
}
  </script>
  <script src="/graphql/assets/react.production.min.js"></script>
  <script src="/graphql/assets/react-dom.production.min.js"></script>
  <script src="/graphql/assets/graphiql.min.js"></script>
  <script>
    const example = JSON.parse(document.getElementById("memspace-example").textContent);
    const banner = document.getElementById("memspace-no-key");
    const origin = window.location.origin;
    // Subscriptions go to the same URL as queries (it upgrades to graphql-transport-ws).
    const server = GraphiQL.createFetcher({
      url: origin + "/graphql",
      subscriptionUrl: origin.replace(/^http/, "ws") + "/graphql",
    });
    function parseHeaders(text) {
      try { return JSON.parse(text || "{}") || {}; } catch (_) { return {}; }
    }
    // A usable credential: `Authorization: Bearer|Token <key>` or `X-API-Key: <key>`, not the
    // placeholder.
    function hasKey(headers) {
      return Object.keys(headers || {}).some((name) => {
        const value = String(headers[name] == null ? "" : headers[name]).trim();
        if (value === "" || value.includes("<")) return false;
        const lower = name.toLowerCase();
        if (lower === "x-api-key") return true;
        return lower === "authorization" && /^(bearer|token)\s+\S+/i.test(value);
      });
    }
    const noKey = {
      errors: [{
        message: "No API key in the Headers pane. Add {\"Authorization\": \"Bearer <key>\"} " +
          "there (the first start printed an admin key, or set MEMSPACE_ADMIN_KEY; " +
          "`memspace admin create-key --org default` or the createApiKey mutation make more), then run again.",
        extensions: { code: "UNAUTHENTICATED" },
      }],
    };
    let keySeen = false;
    function showKeyState(headers) {
      keySeen = hasKey(headers);
      banner.hidden = keySeen;
    }
    function fetcher(params, opts) {
      const headers = (opts && opts.headers) || {};
      showKeyState(headers);
      if (!keySeen) return Promise.resolve(noKey);
      return server(params, opts);
    }
    const root = ReactDOM.createRoot(document.getElementById("graphiql"));
    let generation = 0;
    function render() {
      // A new fetcher identity makes GraphiQL fetch the schema again (for its docs pane).
      const current = (params, opts) => fetcher(params, opts);
      root.render(
        React.createElement(GraphiQL, {
          fetcher: current,
          defaultQuery: example.query,
          defaultTabs: [{ query: example.query, variables: example.variables, headers: example.headers }],
          isHeadersEditorEnabled: true,
          shouldPersistHeaders: true,
          defaultEditorToolsVisibility: "headers",
          defaultHeaders: example.headers,
          onEditHeaders: (text) => {
            const had = keySeen;
            showKeyState(parseHeaders(text));
            if (keySeen && !had) render();
          },
        })
      );
    }
    render();
  </script>
</body>
</html>
"##;

/// One asset: its gzip bytes at rest and, once asked for, the identity bytes.
struct Asset {
    gzip: &'static [u8],
    identity: &'static OnceLock<Vec<u8>>,
    content_type: &'static str,
}

fn lookup(file: &str) -> Option<Asset> {
    static IDENTITY: [OnceLock<Vec<u8>>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let (i, gzip, content_type) = match file {
        "graphiql.min.js" => (0, GRAPHIQL_JS, "application/javascript; charset=utf-8"),
        "graphiql.min.css" => (1, GRAPHIQL_CSS, "text/css; charset=utf-8"),
        "react.production.min.js" => (2, REACT_JS, "application/javascript; charset=utf-8"),
        "react-dom.production.min.js" => (3, REACT_DOM_JS, "application/javascript; charset=utf-8"),
        _ => return None,
    };
    Some(Asset {
        gzip,
        identity: &IDENTITY[i],
        content_type,
    })
}

/// Whether `Accept-Encoding` allows gzip (`gzip`, `x-gzip` or `*`, with a q-value above 0).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let item = item.to_ascii_lowercase();
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_string();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            matches!(coding.as_str(), "gzip" | "x-gzip" | "*") && q > 0.0
        })
}

fn gunzip(gzip: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(gzip.len() * 4);
    flate2::read::GzDecoder::new(gzip).read_to_end(&mut out)?;
    Ok(out)
}

/// `/graphql/assets/{file}`: gzip when the client accepts it, else the identity body; always
/// `Vary: Accept-Encoding` so a shared cache keeps the two apart.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = lookup(&file) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let gzip = accepts_gzip(&headers);
    let body: &'static [u8] = if gzip {
        asset.gzip
    } else {
        match asset.identity.get() {
            Some(bytes) => bytes,
            None => match gunzip(asset.gzip) {
                Ok(bytes) => asset.identity.get_or_init(|| bytes),
                Err(e) => {
                    tracing::error!(error = %e, file, "a GraphiQL asset does not decompress");
                    return (StatusCode::SERVICE_UNAVAILABLE, "asset unavailable").into_response();
                }
            },
        }
    };
    let mut resp = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
        ],
        body,
    )
        .into_response();
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn gzip_is_accepted_only_when_asked_for() {
        for yes in [
            "gzip",
            "gzip, deflate, br",
            "br;q=1.0, gzip;q=0.8",
            "*",
            "x-gzip",
        ] {
            assert!(accepts_gzip(&with(yes)), "{yes}");
        }
        for no in ["identity", "br", "gzip;q=0", "deflate, gzip;q=0.0"] {
            assert!(!accepts_gzip(&with(no)), "{no}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn every_asset_decompresses() {
        for file in [
            "graphiql.min.js",
            "graphiql.min.css",
            "react.production.min.js",
            "react-dom.production.min.js",
        ] {
            let asset = lookup(file).unwrap();
            assert!(
                gunzip(asset.gzip).unwrap().len() > asset.gzip.len(),
                "{file}"
            );
        }
    }
}
