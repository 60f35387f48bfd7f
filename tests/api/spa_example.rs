//! The example browser app's server (`examples/spa_server.rs`) and the tasks
//! API's CORS, over HTTP. The browser tests drive the pages themselves; these
//! pin what the pages rely on: the ids, `/config.js`, the headers, and which
//! origins may call the tasks API.

use std::sync::Arc;

use latchkey_verify::{Verifier, VerifierConfig};
use poem::listener::{Acceptor, Listener, TcpListener};
use serde_json::{Value, json};

use crate::tasks_e2e::tasks_api;

#[path = "../../examples/spa_server.rs"]
pub(crate) mod spa_server;

async fn serve(app: impl poem::Endpoint + 'static) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    format!("http://{addr}")
}

fn spa_dir() -> String {
    format!("{}/examples/spa", env!("CARGO_MANIFEST_DIR"))
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn the_spa_server_serves_the_pages_config_and_a_strict_policy() {
    let client_id = "spa \"client\" </script>\u{2028}";
    let config =
        spa_server::SpaConfig::new("http://127.0.0.1:8080/", client_id, "http://127.0.0.1:8081").unwrap();
    let base = serve(spa_server::routes(spa_dir(), config)).await;

    // The pages, with the ids the browser tests (and people) rely on.
    let pages = [
        (
            "/",
            &[
                "sign-in",
                "sign-out",
                "status",
                "task-title",
                "add-task",
                "tasks",
                "refresh",
                "refresh-count",
                "token-expiry",
                "error",
            ][..],
        ),
        (
            "/cookie.html",
            &["username", "password", "login", "me", "refresh", "logout", "status", "error", "refresh-count"]
                [..],
        ),
    ];
    for (path, ids) in pages {
        let resp = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(header(&resp, "content-type"), Some("text/html; charset=utf-8"));
        let csp = header(&resp, "content-security-policy").unwrap().to_owned();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self' http://127.0.0.1:8080 http://127.0.0.1:8081",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp} lacks {directive}");
        }
        assert_eq!(header(&resp, "referrer-policy"), Some("no-referrer"));
        assert_eq!(header(&resp, "x-content-type-options"), Some("nosniff"));
        let html = resp.text().await.unwrap();
        for id in ids {
            assert!(html.contains(&format!("id=\"{id}\"")), "{path} lacks #{id}");
        }
        assert!(!html.contains("style=") && !html.contains("<script>"), "{path}: nothing inline");
    }
    for (path, content_type) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/cookie.js", "text/javascript; charset=utf-8"),
        ("/common.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let resp = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(header(&resp, "content-type"), Some(content_type), "{path}");
    }

    // config.js: the settings as JSON, escaped, the issuer without its trailing slash.
    let resp = reqwest::get(format!("{base}/config.js")).await.unwrap();
    assert_eq!(header(&resp, "content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(header(&resp, "cache-control"), Some("no-store"));
    let module = resp.text().await.unwrap();
    let literal = module.split("export const config = ").nth(1).unwrap().trim_end().trim_end_matches(';');
    let parsed: Value = serde_json::from_str(literal).unwrap();
    assert_eq!(
        parsed,
        json!({"issuer": "http://127.0.0.1:8080", "clientId": client_id, "tasksApi": "http://127.0.0.1:8081"})
    );
    assert!(!module.contains("\"spa \"client"), "quotes are escaped");

    // Only plain top-level files of the served kinds.
    let raw = reqwest::Client::new();
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/..%2fspa_server.rs",
        "/.hidden.js",
        "/README.md",
        "/nope.html",
    ] {
        let resp = raw.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
}

#[test]
fn the_spa_config_accepts_only_http_urls() {
    assert!(spa_server::SpaConfig::new("javascript:alert(1)", "c", "http://127.0.0.1:8081").is_err());
    assert!(spa_server::SpaConfig::new("http://127.0.0.1:8080", "c", "not a url").is_err());
    assert!(
        spa_server::SpaConfig::new("http://127.0.0.1:8080; script-src *", "c", "http://127.0.0.1:8081")
            .is_err()
    );
    assert!(spa_server::SpaConfig::new("https://id.example.com", "c", "https://tasks.example.com/").is_ok());
}

fn offline_verifier() -> Verifier {
    Verifier::from_jwks(VerifierConfig::new("http://127.0.0.1:9", "latchkey"), br#"{"keys": []}"#).unwrap()
}

#[tokio::test]
async fn the_tasks_api_answers_cors_only_for_its_origins() {
    let spa = "http://127.0.0.1:8082";
    let store = Arc::new(tasks_api::Store::default());
    let base = serve(tasks_api::app_with_cors(offline_verifier(), store, vec![spa.to_owned()])).await;
    let client = reqwest::Client::new();
    let preflight = |origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{base}/tasks"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };

    // The listed origin: preflight answered, responses shared (errors too),
    // the challenge readable; no credentials (tokens are not cookies).
    let resp = preflight(spa).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(header(&resp, "access-control-allow-origin"), Some(spa));
    let allowed = header(&resp, "access-control-allow-headers").unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    assert!(header(&resp, "access-control-allow-methods").unwrap().contains("POST"));
    assert_eq!(header(&resp, "access-control-max-age"), Some("600"));
    let resp = client.get(format!("{base}/tasks")).header("origin", spa).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "access-control-allow-origin"), Some(spa));
    assert_eq!(header(&resp, "vary"), Some("Origin"));
    assert_eq!(header(&resp, "access-control-expose-headers"), Some("www-authenticate"));
    assert_eq!(header(&resp, "access-control-allow-credentials"), None);

    // Any other origin: refused, and nothing a browser would share.
    for origin in ["http://127.0.0.1:8083", "http://localhost:8082", "null"] {
        let resp = preflight(origin).await.unwrap();
        assert_eq!(header(&resp, "access-control-allow-origin"), None, "{origin}");
        let resp = client.get(format!("{base}/tasks")).header("origin", origin).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{origin}");
        assert_eq!(header(&resp, "access-control-allow-origin"), None, "{origin}");
    }

    // Servers and curl send no Origin: unaffected.
    let resp = client.get(format!("{base}/tasks")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "access-control-allow-origin"), None);

    // Without origins (the default), no browser origin at all.
    let closed = serve(tasks_api::app(offline_verifier(), Arc::new(tasks_api::Store::default()))).await;
    let resp = client.get(format!("{closed}/tasks")).header("origin", spa).send().await.unwrap();
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
}

#[test]
fn tasks_cors_origins_must_be_exact_origins() {
    assert_eq!(
        tasks_api::parse_origins(" http://127.0.0.1:8082, https://app.example.com ,").unwrap(),
        vec!["http://127.0.0.1:8082".to_owned(), "https://app.example.com".to_owned()]
    );
    assert_eq!(tasks_api::parse_origins("").unwrap(), Vec::<String>::new());
    for bad in
        ["*", "http://127.0.0.1:8082/", "https://app.example.com/path", "app.example.com", "ftp://x.example"]
    {
        assert!(tasks_api::parse_origins(bad).is_err(), "{bad}");
    }
}
