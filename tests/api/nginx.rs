//! latchkey behind Debian's real nginx, run with deploy/nginx.conf.
//!
//! Everything is on loopback, so the peers are made distinguishable: nginx
//! connects to latchkey from 127.0.0.2 (`proxy_bind`) and only that address
//! is in `LATCHKEY_TRUSTED_PROXIES`; the browser-like client reaches nginx
//! from 127.0.0.3; direct requests to latchkey come from 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::db_test;
use crate::helpers::{TestCa, eventually};
use crate::oauth_support::{self, PASSWORD};

const NGINX_ENV: &str = "LATCHKEY_TEST_NGINX";
const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

fn find_nginx() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(NGINX_ENV) {
        return Some(PathBuf::from(path));
    }
    ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running nginx, stopped on drop.
struct Nginx {
    child: Child,
    dir: TempDir,
    http_port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// deploy/nginx.conf with only the names, ports and paths its
    /// "deployment:" comments mark replaced; each must be found, so the
    /// file cannot drift away from what this test runs.
    fn start(binary: &Path, ca: &TestCa, https_port: u16, upstream_port: u16) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(path("cert.pem"), &ca.cert_pem).unwrap();
        std::fs::write(path("key.pem"), &ca.key_pem).unwrap();
        for sub in ["cache", "www", "tmp"] {
            std::fs::create_dir(path(sub)).unwrap();
        }
        // Workers may run as another user when the tests run as root.
        use std::os::unix::fs::PermissionsExt;
        for p in [dir.path().to_path_buf(), dir.path().join("cache"), dir.path().join("tmp")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let http_port = free_port();
        let template =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"))
                .expect("deploy/nginx.conf");
        let tmp = path("tmp");
        let replacements = [
            ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
            ("listen 443 ssl http2;", format!("listen 127.0.0.1:{https_port} ssl http2;")),
            ("server_name auth.example.com;", "server_name localhost;".to_owned()),
            ("/etc/letsencrypt/live/auth.example.com/fullchain.pem", path("cert.pem")),
            ("/etc/letsencrypt/live/auth.example.com/privkey.pem", path("key.pem")),
            ("/var/cache/nginx/latchkey", path("cache")),
            ("/var/www/letsencrypt", path("www")),
            ("/etc/nginx/latchkey-upstreams.conf", path("upstreams.conf")),
            ("# proxy_bind 10.0.0.2;", format!("proxy_bind {PROXY};")),
            (
                "http {",
                format!(
                    "http {{\n    client_body_temp_path {tmp}/body;\n    proxy_temp_path {tmp}/proxy;\n    fastcgi_temp_path {tmp}/fastcgi;\n    uwsgi_temp_path {tmp}/uwsgi;\n    scgi_temp_path {tmp}/scgi;"
                ),
            ),
        ];
        let mut conf = template;
        for (from, to) in &replacements {
            assert!(conf.contains(from), "deploy/nginx.conf no longer contains {from:?}");
            conf = conf.replace(from, to);
        }
        std::fs::write(path("nginx.conf"), conf).unwrap();
        // deploy/nginx-upstreams.conf, pointed at this test's latchkey.
        let upstreams = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx-upstreams.conf"),
        )
        .expect("deploy/nginx-upstreams.conf");
        assert!(upstreams.contains("server 127.0.0.1:8080;"), "{upstreams}");
        let upstreams =
            upstreams.replace("server 127.0.0.1:8080;", &format!("server 127.0.0.1:{upstream_port};"));
        std::fs::write(path("upstreams.conf"), upstreams).unwrap();
        let globals = format!("daemon off; pid {}; error_log {} warn;", path("nginx.pid"), path("error.log"));
        let check = Command::new(binary)
            .args(["-t", "-p", &path(""), "-c", &path("nginx.conf"), "-g", &globals])
            .output()
            .expect("nginx -t");
        assert!(check.status.success(), "nginx -t: {}", String::from_utf8_lossy(&check.stderr));
        let child = Command::new(binary)
            .args(["-p", &path(""), "-c", &path("nginx.conf"), "-g", &globals])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        Nginx { child, dir, http_port }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

db_test!(async fn behind_nginx_latchkey_sees_the_client_and_speaks_https(backend) {
    let Some(nginx_binary) = find_nginx() else {
        assert!(std::env::var_os("CI").is_none(), "nginx test not run: no nginx found (set {NGINX_ENV} or install Debian's nginx)");
        eprintln!("nginx test skipped: no nginx found");
        return;
    };
    let ca = TestCa::new();
    let https_port = free_port();
    let public = format!("https://localhost:{https_port}");
    let issuer = public.clone();
    let (app, admin) = oauth_support::spawn_with_admin_configured(backend, move |s| {
        s.issuer = Some(issuer);
        s.trusted_proxies = vec![ipnet::IpNet::from(IpAddr::V4(PROXY))];
    })
    .await;
    let upstream_port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let nginx = Nginx::start(&nginx_binary, &ca, https_port, upstream_port);

    // A browser-like client: trusts the test CA, reaches nginx from CLIENT.
    let via_nginx = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap())
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], https_port)))
        .local_address(IpAddr::V4(CLIENT))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let up = eventually(Duration::from_secs(10), || {
        let req = via_nginx.get(format!("{public}/readyz"));
        async move { req.send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    assert!(up, "nginx did not come up: {}", nginx.error_log());

    // Discovery lists the public https URLs.
    let discovery: Value =
        via_nginx.get(format!("{public}/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], public);
    for key in ["authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"] {
        assert!(discovery[key].as_str().unwrap().starts_with(&format!("{public}/")), "{key}: {discovery}");
    }

    // Plain HTTP is redirected to HTTPS.
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = plain.get(format!("http://localhost:{}/auth/me", nginx.http_port)).send().await.unwrap();
    assert_eq!(resp.status(), 301);
    assert_eq!(resp.headers()["location"], "https://localhost/auth/me");

    // A login through nginx records the forwarded client address, on the
    // session and in the audit log; a spoofed X-Forwarded-For sent to nginx
    // is overwritten, not passed on.
    let login = via_nginx
        .post(format!("{public}/auth/login"))
        .header("x-forwarded-for", "198.51.100.66")
        .json(&json!({"username": "user", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert!(login.headers().contains_key("strict-transport-security"));
    let tokens: Value = login.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let sessions: Value =
        via_nginx.get(format!("{public}/auth/sessions")).bearer_auth(access).send().await.unwrap().json().await.unwrap();
    assert_eq!(sessions[0]["ip"], CLIENT.to_string(), "{sessions}");
    let me: Value = via_nginx.get(format!("{public}/auth/me")).bearer_auth(access).send().await.unwrap().json().await.unwrap();
    let events: Value = app
        .client
        .get(app.url(&format!("/admin/audit?kind=login_succeeded&subject_id={}", me["id"].as_str().unwrap())))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = events["events"].as_array().unwrap_or_else(|| panic!("{events}"));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["ip"], CLIENT.to_string());

    // Directly from an untrusted peer (127.0.0.1), X-Forwarded-For is not believed.
    let direct = app
        .client
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", "198.51.100.66")
        .json(&json!({"username": "user", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    let direct: Value = direct.json().await.unwrap();
    let sessions: Value = app
        .get_with_token("/auth/sessions", direct["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let ips: Vec<&str> = sessions.as_array().unwrap().iter().map(|s| s["ip"].as_str().unwrap()).collect();
    assert!(ips.contains(&"127.0.0.1"), "{ips:?}");
    assert!(!ips.contains(&"198.51.100.66"), "{ips:?}");

    // The sign-in page's cookies are Secure behind the proxy.
    let client = oauth_support::public(&app, &admin).await;
    let url = oauth_support::authorize_url_with_pkce(&app, &client.id, &[("scope", "openid")]).replace(&app.address, &public);
    let page = via_nginx.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200, "{}", page.text().await.unwrap());
    let cookies: Vec<String> =
        page.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert!(!cookies.is_empty());
    for cookie in &cookies {
        assert!(cookie.contains("; Secure") || cookie.contains(";Secure"), "{cookie}");
    }

    // The JWKS is cached as latchkey's Cache-Control allows.
    let jwks = format!("{public}/.well-known/jwks.json");
    let first = via_nginx.get(&jwks).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache-status"], "MISS");
    let second = via_nginx.get(&jwks).send().await.unwrap();
    assert_eq!(second.headers()["x-cache-status"], "HIT");
    assert!(second.headers()["cache-control"].to_str().unwrap().contains("max-age="));

    // Bodies over latchkey's limit stop at nginx.
    let big = via_nginx
        .post(format!("{public}/auth/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    drop(nginx);
});
