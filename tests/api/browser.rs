//! GraphiQL in a real browser: headless Chromium (driven by chromedriver over WebDriver) loads
//! the page served by the running server, runs a query with an API key header and shows the
//! result. `.ci/run` installs Debian's chromium and chromium-driver and sets
//! MEMSPACE_REQUIRE_BROWSER=1, so there a missing browser fails the test; elsewhere it is skipped
//! with a message.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

use crate::common::TestApp;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(binary: &str) -> Option<String> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(binary))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}

async fn wait_for_port(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn graphiql_runs_a_query_with_an_api_key_in_headless_chromium() {
    let required = std::env::var_os("MEMSPACE_REQUIRE_BROWSER").is_some();
    let (Some(driver_bin), Some(chromium)) = (
        find("chromedriver"),
        find("chromium").or_else(|| find("chromium-browser")),
    ) else {
        assert!(
            !required,
            "MEMSPACE_REQUIRE_BROWSER is set but chromium/chromedriver are not installed"
        );
        eprintln!("skipping: chromium and chromedriver are not installed (apt install chromium chromium-driver)");
        return;
    };
    // Two crypto providers are linked into the test binary; pick one for the WebDriver client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app = TestApp::spawn().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let _driver = Driver(
        Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    assert!(wait_for_port(port).await, "chromedriver did not listen");
    let profile = tempfile::tempdir().expect("profile dir");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync", "--disable-quic",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let client = ClientBuilder::rustls()
        .expect("tls")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("webdriver session");

    let page = format!("{}/graphql", app.url);
    // Storage is set from another page of the same origin, before GraphiQL ever runs: a
    // GraphiQL page open meanwhile saves its own tab state (debounced) over ours.
    client
        .goto(&format!("{}/healthz", app.url))
        .await
        .expect("origin page loads");
    // The key goes where a user types it: GraphiQL's headers, kept in local storage.
    let headers = json!({ "Authorization": format!("Bearer {}", app.admin_key) }).to_string();
    client
        .execute(
            "localStorage.setItem('graphiql:headers', arguments[0]);
             localStorage.setItem('graphiql:query', arguments[1]);
             localStorage.removeItem('graphiql:tabState');",
            vec![
                json!(headers),
                json!("query Who { viewer { organization { handle } } }"),
            ],
        )
        .await
        .expect("storage set");
    client.goto(&page).await.expect("GraphiQL loads");
    let run = client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(".graphiql-execute-button"))
        .await
        .expect("GraphiQL rendered its run button");
    run.click().await.expect("run clicked");

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut shown = String::new();
    while Instant::now() < deadline {
        let text = client
            .execute(
                "const r = document.querySelector('.result-window'); return r ? r.innerText : '';",
                vec![],
            )
            .await
            .expect("read result");
        shown = text.as_str().unwrap_or_default().to_string();
        if shown.contains("\"handle\": \"default\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.close().await.ok();
    assert!(
        shown.contains("\"handle\": \"default\""),
        "GraphiQL did not show the query's result; result pane: {shown:?}"
    );
}
