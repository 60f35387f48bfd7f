//! A real browser for the tests: Debian's Chromium, headless, driven over the
//! DevTools protocol (CDP) with `chromiumoxide`.
//!
//! An HTTP client is not a browser: it sends no `Origin`, no `Sec-Fetch-*`,
//! follows no `Referrer-Policy`, runs no JavaScript and enforces no CORS or
//! CSP. The sign-in page once failed in every real browser while every
//! reqwest test passed, so the browser-facing flows are proven here with the
//! real thing.
//!
//! Chromium is found at `LATCHKEY_TEST_CHROMIUM`, else `/usr/bin/chromium`,
//! else `chromium` / `chromium-browser` / `google-chrome` on `PATH`. Without
//! one a browser test skips with a message, the same as the PostgreSQL pass;
//! with `CI` set (`.ci/run`) it fails instead.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::network::{
    EventRequestWillBeSent, EventRequestWillBeSentExtraInfo, EventResponseReceived,
};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures_util::StreamExt;
use serde_json::Value;
use tempfile::TempDir;

pub const CHROMIUM_ENV: &str = "LATCHKEY_TEST_CHROMIUM";

/// How long any single wait in a browser test may take.
pub const WAIT: Duration = Duration::from_secs(15);

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(CHROMIUM_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.exists() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// One headless Chromium with a profile of its own, closed on drop.
pub struct Chromium {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    _profile: TempDir,
}

/// Options for [`Chromium::launch_with`].
#[derive(Default)]
pub struct LaunchOptions {
    /// Base64 SHA-256 hashes of certificate public keys to trust (a test
    /// certificate), as `--ignore-certificate-errors-spki-list` takes them.
    pub trusted_spki: Vec<String>,
}

impl Chromium {
    /// Launch Chromium, or `None` (with a message) when there is none and
    /// this is not CI.
    pub async fn launch() -> Option<Chromium> {
        Self::launch_with(LaunchOptions::default()).await
    }

    pub async fn launch_with(options: LaunchOptions) -> Option<Chromium> {
        let Some(executable) = find_chromium() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "browser test not run: no Chromium found (set {CHROMIUM_ENV} or install Debian's chromium)"
            );
            eprintln!("browser test skipped: no Chromium found (set {CHROMIUM_ENV} or install chromium)");
            return None;
        };
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args = vec![
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--password-store=basic".to_owned(),
        ];
        if !options.trusted_spki.is_empty() {
            args.push(format!("--ignore-certificate-errors-spki-list={}", options.trusted_spki.join(",")));
        }
        let config = BrowserConfig::builder()
            .chrome_executable(executable)
            .no_sandbox()
            .new_headless_mode()
            .user_data_dir(profile.path())
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(30))
            .viewport(None)
            .args(args)
            .build()
            .expect("browser config");
        let (browser, mut handler) = Browser::launch(config).await.expect("Chromium launches");
        // The handler drives the CDP connection; it ends when the browser closes.
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Some(Chromium { browser, handler, _profile: profile })
    }

    /// A new tab with network events recorded.
    pub async fn page(&self) -> Tab {
        let page = self.browser.new_page("about:blank").await.expect("new tab");
        let network = Network::record(&page).await;
        Tab { page, network }
    }

    /// Every cookie the browser holds, for any site.
    pub async fn cookies(&self) -> Vec<chromiumoxide::cdp::browser_protocol::network::Cookie> {
        self.browser.get_cookies().await.expect("cookies")
    }

    pub async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
        self.handler.abort();
    }
}

/// One request as Chromium sent it, and the status it got.
#[derive(Clone, Debug, Default)]
pub struct SeenRequest {
    pub method: String,
    pub url: String,
    /// The headers that really went on the wire (`requestWillBeSentExtraInfo`):
    /// `Origin`, `Sec-Fetch-*`, `Cookie`, `Referer`... Names in lower case.
    pub headers: HashMap<String, String>,
    pub status: Option<i64>,
    pub response_headers: HashMap<String, String>,
}

/// Every request a tab made. CDP reports a redirect chain under one request
/// id: each hop is a `requestWillBeSent` (carrying the previous hop's
/// response as `redirectResponse`) and an `extraInfo` with the headers
/// really sent, in order; only the last hop gets a `responseReceived`.
#[derive(Clone, Default)]
pub struct Network {
    events: Arc<Mutex<Events>>,
}

#[derive(Default)]
struct Events {
    /// (request id, hop)
    hops: Vec<(String, SeenRequest)>,
    /// Sent headers per request id, one entry per hop.
    sent_headers: HashMap<String, Vec<HashMap<String, String>>>,
}

fn header_map(headers: &Value) -> HashMap<String, String> {
    headers
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

impl Network {
    async fn record(page: &Page) -> Network {
        let network = Network::default();
        let mut sent = page.event_listener::<EventRequestWillBeSent>().await.expect("listen");
        let mut extra = page.event_listener::<EventRequestWillBeSentExtraInfo>().await.expect("listen");
        let mut received = page.event_listener::<EventResponseReceived>().await.expect("listen");
        let events = Arc::clone(&network.events);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(e) = sent.next() => {
                        let id = e.request_id.inner().clone();
                        let mut ev = events.lock().unwrap();
                        if let Some(redirect) = &e.redirect_response {
                            if let Some((_, hop)) = ev.hops.iter_mut().rev().find(|(rid, _)| *rid == id) {
                                hop.status = Some(redirect.status);
                                hop.response_headers = header_map(redirect.headers.inner());
                            }
                        }
                        ev.hops.push((id, SeenRequest {
                            method: e.request.method.clone(),
                            url: e.request.url.clone(),
                            headers: header_map(e.request.headers.inner()),
                            ..Default::default()
                        }));
                    }
                    Some(e) = extra.next() => {
                        let id = e.request_id.inner().clone();
                        let mut ev = events.lock().unwrap();
                        ev.sent_headers.entry(id).or_default().push(header_map(e.headers.inner()));
                    }
                    Some(e) = received.next() => {
                        let id = e.request_id.inner().clone();
                        let mut ev = events.lock().unwrap();
                        if let Some((_, hop)) = ev.hops.iter_mut().rev().find(|(rid, _)| *rid == id) {
                            hop.status = Some(e.response.status);
                            hop.response_headers = header_map(e.response.headers.inner());
                        }
                    }
                    else => break,
                }
            }
        });
        network
    }

    /// Every request seen so far, in order, with the headers really sent.
    pub fn all(&self) -> Vec<SeenRequest> {
        let ev = self.events.lock().unwrap();
        let mut hop_index: HashMap<&str, usize> = HashMap::new();
        ev.hops
            .iter()
            .map(|(id, hop)| {
                let n = hop_index.entry(id.as_str()).or_default();
                let mut hop = hop.clone();
                if let Some(headers) = ev.sent_headers.get(id).and_then(|h| h.get(*n)) {
                    hop.headers = headers.clone();
                }
                *n += 1;
                hop
            })
            .collect()
    }

    /// The last request with this method whose URL starts with `prefix`.
    pub fn last(&self, method: &str, prefix: &str) -> Option<SeenRequest> {
        self.all().into_iter().rev().find(|r| r.method == method && r.url.starts_with(prefix))
    }

    /// The same, once its response has been reported (CDP events can trail
    /// what the page already shows), or `None` after [`WAIT`].
    pub async fn answered(&self, method: &str, prefix: &str) -> Option<SeenRequest> {
        let started = tokio::time::Instant::now();
        loop {
            let last = self.last(method, prefix);
            if last.as_ref().is_some_and(|r| r.status.is_some()) || started.elapsed() > WAIT {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl SeenRequest {
    /// Check the status CDP reported. chromiumoxide now and then loses a
    /// `responseReceived` it cannot parse, so a missing status is tolerated
    /// (every caller also checks what the page shows); a wrong one never is.
    pub fn expect_status(&self, expected: i64) {
        match self.status {
            Some(status) => assert_eq!(status, expected, "{self:?}"),
            None => eprintln!("note: no status reported by CDP for {} {}", self.method, self.url),
        }
    }
}

/// A tab and what it sent.
pub struct Tab {
    pub page: Page,
    pub network: Network,
}

impl Tab {
    pub async fn goto(&self, url: &str) {
        self.page.goto(url).await.unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    pub async fn url(&self) -> String {
        self.page.url().await.expect("url").unwrap_or_default()
    }

    /// Evaluate a JavaScript expression (promises are awaited).
    pub async fn eval(&self, expression: &str) -> Value {
        let result =
            self.page.evaluate(expression).await.unwrap_or_else(|e| panic!("eval {expression}: {e}"));
        result.value().cloned().unwrap_or(Value::Null)
    }

    /// Wait until `expression` is truthy in the page, or panic after [`WAIT`],
    /// describing the page.
    pub async fn wait_for(&self, expression: &str) {
        let started = tokio::time::Instant::now();
        loop {
            // Navigation can destroy the context mid-evaluation: just retry.
            if let Ok(result) = self.page.evaluate(format!("!!({expression})")).await {
                if result.value() == Some(&Value::Bool(true)) {
                    return;
                }
            }
            if started.elapsed() > WAIT {
                let url = self.url().await;
                let body = self.text("body").await;
                panic!("timed out waiting for `{expression}` on {url}; the page says: {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the tab's URL starts with `prefix` and its document is
    /// parsed (a navigation shows the new URL before the page's elements
    /// exist; reading them then would read nothing).
    pub async fn wait_for_url(&self, prefix: &str) {
        self.wait_for(&format!(
            "location.href.startsWith({}) && document.readyState !== 'loading'",
            js_string(prefix)
        ))
        .await;
    }

    /// Wait until an element matching `selector` exists.
    pub async fn wait_for_element(&self, selector: &str) {
        self.wait_for(&format!("document.querySelector({})", js_string(selector))).await;
    }

    /// Wait until an element matching `selector` is rendered and enabled,
    /// as a user needs it to be: pages show their forms only once their
    /// script knows the user is signed out (`hidden` until then).
    pub async fn wait_for_usable(&self, selector: &str) {
        self.wait_for(&format!(
            "(e => !!e && e.getClientRects().length > 0 && !e.disabled)(document.querySelector({}))",
            js_string(selector)
        ))
        .await;
    }

    /// Type into an input the way a user does (focus, key events).
    pub async fn fill(&self, selector: &str, text: &str) {
        self.wait_for_usable(selector).await;
        let element = self.page.find_element(selector).await.unwrap_or_else(|e| panic!("{selector}: {e}"));
        element.click().await.unwrap_or_else(|e| panic!("click {selector}: {e}"));
        // Clear what is there (a kept username), then type.
        self.eval(&format!("document.querySelector({}).select()", js_string(selector))).await;
        element.type_str(text).await.unwrap_or_else(|e| panic!("type into {selector}: {e}"));
    }

    /// Click an element with the mouse, as a user does.
    pub async fn click(&self, selector: &str) {
        self.wait_for_usable(selector).await;
        let element = self.page.find_element(selector).await.unwrap_or_else(|e| panic!("{selector}: {e}"));
        element.click().await.unwrap_or_else(|e| panic!("click {selector}: {e}"));
    }

    /// The visible text of the first element matching `selector` ("" if none).
    pub async fn text(&self, selector: &str) -> String {
        let expr = format!("(document.querySelector({}) || {{}}).innerText || ''", js_string(selector));
        match self.page.evaluate(expr).await {
            Ok(v) => v.value().and_then(Value::as_str).unwrap_or_default().to_owned(),
            Err(_) => String::new(),
        }
    }

    /// Resize the viewport (phone or desktop) for a screenshot.
    pub async fn viewport(&self, width: i64, height: i64, mobile: bool) {
        let params = SetDeviceMetricsOverrideParams::builder()
            .width(width)
            .height(height)
            .device_scale_factor(1.0)
            .mobile(mobile)
            .build()
            .expect("metrics");
        self.page.execute(params).await.expect("set viewport");
    }

    /// A PNG of the whole page.
    pub async fn screenshot(&self) -> Vec<u8> {
        self.page.screenshot(ScreenshotParams::builder().full_page(true).build()).await.expect("screenshot")
    }
}

/// A JavaScript string literal.
pub fn js_string(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// Save a screenshot under `docs/screenshots/` when `UPDATE_SCREENSHOTS` is
/// set (the committed images come from this test); otherwise check that the
/// capture is a real PNG of the expected width.
pub fn keep_screenshot(name: &str, png: &[u8], width: u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: not a PNG");
    let png_width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(png_width, width, "{name}: screenshot width");
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

/// A tiny web server on loopback, port 0: another origin for the tests.
/// It serves the pages it was given by path, and any other path echoes its
/// query string as `<dd id="name">value</dd>` (an OAuth client's redirect
/// target: `#code`, `#state`, `#iss`, `#error`).
pub struct Site {
    /// `http://127.0.0.1:<port>`
    pub origin: String,
    pages: Arc<Mutex<HashMap<String, String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Site {
    pub async fn start() -> Site {
        use poem::listener::{Acceptor, Listener, TcpListener};
        use poem::web::{Data, Html};
        use poem::{EndpointExt, Request, Route, handler};

        type Pages = Arc<Mutex<HashMap<String, String>>>;

        #[handler]
        fn serve(req: &Request, pages: Data<&Pages>) -> Html<String> {
            if let Some(page) = pages.lock().unwrap().get(req.uri().path()) {
                return Html(page.clone());
            }
            let query = req.uri().query().unwrap_or_default();
            let items: String = url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| format!("<dd id=\"{}\">{}</dd>", escape(&k), escape(&v)))
                .collect();
            Html(format!("<!doctype html><title>client</title><h1>Back at the client</h1><dl>{items}</dl>"))
        }

        let pages: Pages = Arc::default();
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("bind");
        let port = acceptor.local_addr()[0].as_socket_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Route::new().at("/*", serve).data(Arc::clone(&pages));
        tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async {
                        let _ = rx.await;
                    },
                    None,
                )
                .await;
        });
        Site { origin: format!("http://127.0.0.1:{port}"), pages, stop: Some(tx) }
    }

    /// The URL of `path` on this site.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// Serve `html` at `path` from now on.
    pub fn page(&self, path: &str, html: impl Into<String>) {
        self.pages.lock().unwrap().insert(path.to_owned(), html.into());
    }
}

fn escape(s: &str) -> String {
    latchkey::http::html::escape(s)
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One request as it arrived on the wire, before latchkey saw it.
#[derive(Clone, Debug)]
pub struct WireRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header names in lower case; repeated headers joined with ", ".
    pub headers: HashMap<String, String>,
}

/// A recording TCP proxy in front of latchkey: the browser talks to it, it
/// forwards every byte both ways and keeps the head of every HTTP/1.1 request
/// that passes. CDP cannot be trusted for this: the wire headers
/// (`Sec-Fetch-*`, `Cookie`) only come in `requestWillBeSentExtraInfo`,
/// which chromiumoxide's typed protocol fails to parse for current Chromium.
/// Plain HTTP only.
pub struct WireTap {
    /// `http://127.0.0.1:<port>`: use it as the issuer.
    pub origin: String,
    listener: Option<tokio::net::TcpListener>,
    seen: Arc<Mutex<Vec<WireRequest>>>,
}

impl WireTap {
    /// Bind the port now (the issuer must be known before latchkey starts).
    pub async fn bind() -> WireTap {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        WireTap { origin: format!("http://127.0.0.1:{port}"), listener: Some(listener), seen: Arc::default() }
    }

    /// Start forwarding to `upstream` (`host:port`).
    pub fn forward_to(&mut self, upstream: String) {
        let listener = self.listener.take().expect("forwarding already");
        let seen = Arc::clone(&self.seen);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (seen, upstream) = (Arc::clone(&seen), upstream.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    });
                    let _ = tap_requests(&mut client_read, &mut server_write, &seen).await;
                    down.abort();
                });
            }
        });
    }

    /// Every request seen so far.
    pub fn all(&self) -> Vec<WireRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request with this method whose path starts with `prefix`.
    pub fn last(&self, method: &str, prefix: &str) -> Option<WireRequest> {
        self.all().into_iter().rev().find(|r| r.method == method && r.target.starts_with(prefix))
    }
}

/// Copy client bytes to the server, recording each request head on the way.
async fn tap_requests(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    seen: &Mutex<Vec<WireRequest>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut pending: Vec<u8> = Vec::new();
    // Bytes of the current body still to skip; None once parsing gave up
    // (a chunked body), after which bytes are only forwarded.
    let mut body_left: Option<usize> = Some(0);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut chunk).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&chunk[..n]).await?;
        let Some(mut left) = body_left else { continue };
        pending.extend_from_slice(&chunk[..n]);
        loop {
            if left > 0 {
                let skip = left.min(pending.len());
                pending.drain(..skip);
                left -= skip;
                if left > 0 {
                    break;
                }
            }
            let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else { break };
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let mut request_line = lines.next().unwrap_or_default().split(' ');
            let method = request_line.next().unwrap_or_default().to_owned();
            let target = request_line.next().unwrap_or_default().to_owned();
            let mut headers: HashMap<String, String> = HashMap::new();
            for line in lines {
                if let Some((name, value)) = line.split_once(':') {
                    let value = value.trim().to_owned();
                    headers
                        .entry(name.trim().to_ascii_lowercase())
                        .and_modify(|v| {
                            v.push_str(", ");
                            v.push_str(&value);
                        })
                        .or_insert(value);
                }
            }
            let chunked = headers.get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
            left = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            seen.lock().unwrap().push(WireRequest { method, target, headers });
            if chunked {
                body_left = None;
                break;
            }
        }
        if body_left.is_some() {
            body_left = Some(left);
        }
    }
}

/// latchkey with an admin and a user (see `oauth_support`), its issuer the
/// [`WireTap`] in front of it: browsers go through the tap, tests may call
/// `app.url(..)` directly.
pub async fn spawn_tapped_with_admin(
    backend: crate::helpers::Backend,
    configure: impl FnOnce(&mut latchkey::config::Settings) + Send + 'static,
) -> (crate::helpers::TestApp, String, WireTap) {
    let mut tap = WireTap::bind().await;
    let issuer = tap.origin.clone();
    let (app, admin) = crate::oauth_support::spawn_with_admin_configured(backend, move |s| {
        s.issuer = Some(issuer);
        configure(s);
    })
    .await;
    tap.forward_to(app.address.trim_start_matches("http://").to_owned());
    (app, admin, tap)
}

/// `path` under the issuer (through the tap, when there is one).
pub fn issuer_url(app: &crate::helpers::TestApp, path: &str) -> String {
    format!("{}{path}", app.state.issuer())
}
