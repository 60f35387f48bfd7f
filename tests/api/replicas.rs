//! Three replicas, one database: three `latchkey serve` processes on one
//! PostgreSQL database, sharing nothing else (no memory, no clock, no
//! cache), as a deployment behind a load balancer runs them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use latchkey_verify::{Verifier, VerifierConfig};
use serde_json::{Value, json};

use crate::helpers::{Backend, PG_ENV, TestDb, eventually};
use crate::processes::{ADMIN, ISSUER, ServeProcess, replica};

pub const PASSWORD: &str = "correct horse battery";

/// Replicas of one fresh PostgreSQL database and a client for them.
pub struct Cluster {
    pub replicas: Vec<ServeProcess>,
    pub http: reqwest::Client,
    /// Dropped after the replicas stopped.
    _db: Arc<TestDb>,
}

/// A service client: introspects and reads the feed.
pub struct Service {
    pub id: String,
    pub secret: String,
    /// Its `client_credentials` access token (`revocations:read`).
    pub token: String,
}

impl Cluster {
    /// `n` replicas, or `None` (and a message) when PostgreSQL is not
    /// configured; under CI that is a failure. The first replica migrates
    /// the database; the others start on the migrated schema.
    pub async fn start(n: usize, extra: &[(&str, &str)]) -> Option<Cluster> {
        if !Backend::postgres_configured() {
            assert!(std::env::var_os("CI").is_none(), "PostgreSQL pass not run: {PG_ENV} is not set");
            eprintln!("PostgreSQL pass not run: {PG_ENV} is not set");
            return None;
        }
        let db = Arc::new(TestDb::new(Backend::Postgres).await);
        let replicas =
            tokio::task::block_in_place(|| (0..n).map(|_| replica(&db, extra)).collect::<Vec<_>>());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Some(Cluster { replicas, http, _db: db })
    }

    pub fn url(&self, replica: usize, path: &str) -> String {
        self.replicas[replica].url(path)
    }

    pub async fn post(&self, replica: usize, path: &str, body: &Value) -> reqwest::Response {
        self.http.post(self.url(replica, path)).json(body).send().await.unwrap()
    }

    pub async fn register(&self, replica: usize, username: &str) -> String {
        let resp =
            self.post(replica, "/auth/register", &json!({"username": username, "password": PASSWORD})).await;
        assert_eq!(resp.status(), 201, "register {username}");
        resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }

    pub async fn login(&self, replica: usize, username: &str) -> Value {
        let resp =
            self.post(replica, "/auth/login", &json!({"username": username, "password": PASSWORD})).await;
        assert_eq!(resp.status(), 200, "login {username}");
        resp.json().await.unwrap()
    }

    pub async fn admin_token(&self, replica: usize) -> String {
        let body = json!({"username": ADMIN.0, "password": ADMIN.1, "scope": "latchkey:admin"});
        let resp = self.post(replica, "/auth/login", &body).await;
        assert_eq!(resp.status(), 200, "admin login");
        resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn service(&self, replica: usize, admin: &str) -> Service {
        let body = json!({"client_name": "svc", "grant_types": ["client_credentials"], "scope": "latchkey:introspect revocations:read"});
        let resp = self
            .http
            .post(self.url(replica, "/admin/clients"))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "register client");
        let client: Value = resp.json().await.unwrap();
        let (id, secret) = (
            client["client_id"].as_str().unwrap().to_owned(),
            client["client_secret"].as_str().unwrap().to_owned(),
        );
        let mut service = Service { id, secret, token: String::new() };
        service.token = self.client_token(replica, &service).await;
        service
    }

    /// A `client_credentials` access token from `replica`.
    pub async fn client_token(&self, replica: usize, service: &Service) -> String {
        let resp = self
            .http
            .post(self.url(replica, "/oauth/token"))
            .basic_auth(&service.id, Some(&service.secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "client_credentials");
        resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn active(&self, replica: usize, service: &Service, token: &str) -> bool {
        let resp = self
            .http
            .post(self.url(replica, "/oauth/introspect"))
            .basic_auth(&service.id, Some(&service.secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "introspect");
        resp.json::<Value>().await.unwrap()["active"].as_bool().unwrap()
    }

    pub async fn jwks(&self, replica: usize) -> bytes::Bytes {
        let resp = self.http.get(self.url(replica, "/.well-known/jwks.json")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap()
    }

    pub async fn kids(&self, replica: usize) -> BTreeSet<String> {
        let jwks: Value = serde_json::from_slice(&self.jwks(replica).await).unwrap();
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
    }

    /// One page of the revocation feed after `cursor`.
    pub async fn feed(&self, replica: usize, reader: &str, cursor: &str, limit: u32) -> Value {
        let url = self.url(replica, &format!("/revocations?since={cursor}&limit={limit}"));
        let resp = self.http.get(url).bearer_auth(reader).send().await.unwrap();
        assert_eq!(resp.status(), 200, "feed");
        resp.json().await.unwrap()
    }

    pub async fn feed_cursor(&self, replica: usize, reader: &str) -> String {
        let resp = self
            .http
            .get(self.url(replica, "/revocations/snapshot"))
            .bearer_auth(reader)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "snapshot");
        resp.json::<Value>().await.unwrap()["cursor"].as_str().unwrap().to_owned()
    }
}

fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_any_replica_verifies_with_the_jwks_of_every_other() {
    let Some(cluster) = Cluster::start(3, &[]).await else { return };
    cluster.register(0, "alice").await;
    for signer in 0..3 {
        let token = cluster.login(signer, "alice").await;
        for verifier in (0..3).filter(|v| *v != signer) {
            let jwks = cluster.jwks(verifier).await;
            let verifier = Verifier::from_jwks(VerifierConfig::new(ISSUER, "latchkey"), &jwks).unwrap();
            let claims = verifier.verify(access(&token)).await;
            assert!(claims.is_ok(), "a token from replica {signer} does not verify: {claims:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_through_one_replica_signs_on_all_and_its_successor_is_published_by_all() {
    // With a JWKS max-age of 0 the publication lead is 0 + 1 + 5 s, so the
    // promoted key may sign within seconds of its creation.
    let Some(cluster) = Cluster::start(3, &[("LATCHKEY_JWKS_MAX_AGE", "0")]).await else { return };
    let admin = cluster.admin_token(1).await;
    let service = cluster.service(1, &admin).await;
    let before = cluster.kids(0).await;
    let resp = cluster
        .http
        .post(cluster.url(1, "/admin/keys/rotate"))
        .bearer_auth(&admin)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let promoted: Vec<Value> = resp.json().await.unwrap();
    let access_kid = promoted.iter().find(|k| k["purpose"] == "access").expect("the access key was promoted")
        ["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(before.contains(&access_kid), "the promoted key was published before it signs");
    // Every replica signs with it once it activates: at the latest one
    // publication lead plus one reload interval after it was created. The
    // margin covers a loaded CI machine; this is not a speed claim.
    for r in 0..3 {
        let signs = eventually(Duration::from_secs(30), || async {
            let token = cluster.client_token(r, &service).await;
            crate::jwt::header(&token)["kid"] == access_kid.as_str()
        })
        .await;
        assert!(signs, "replica {r} does not sign with the rotated key {access_kid}");
    }
    // Its successor, a new next key, is published by all three alike.
    let published = eventually(Duration::from_secs(30), || async {
        let sets = [cluster.kids(0).await, cluster.kids(1).await, cluster.kids(2).await];
        sets.iter().all(|s| s == &sets[0]) && !sets[0].is_subset(&before)
    })
    .await;
    assert!(published, "the replicas do not publish the same successor key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_across_replicas_converge_on_one_token() {
    let Some(cluster) = Cluster::start(3, &[]).await else { return };
    cluster.register(0, "alice").await;
    let tokens = cluster.login(0, "alice").await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let cluster = Arc::new(cluster);
    let mut racers = Vec::new();
    for i in 0..9 {
        let (cluster, refresh) = (Arc::clone(&cluster), refresh.clone());
        racers.push(tokio::spawn(async move {
            let resp = cluster.post(i % 3, "/auth/refresh", &json!({"refresh_token": refresh})).await;
            assert_eq!(resp.status(), 200, "a concurrent refresh on replica {} failed", i % 3);
            resp.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned()
        }));
    }
    let mut current = BTreeSet::new();
    for racer in racers {
        current.insert(racer.await.unwrap());
    }
    assert_eq!(current.len(), 1, "the racers were handed different refresh tokens: {current:?}");
    // That one token is the family's current one, on every replica.
    let current = current.into_iter().next().unwrap();
    let resp = cluster.post(2, "/auth/refresh", &json!({"refresh_token": current})).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_through_one_replica_is_seen_by_introspection_on_the_others_at_once() {
    let Some(cluster) = Cluster::start(3, &[]).await else { return };
    let admin = cluster.admin_token(0).await;
    let service = cluster.service(0, &admin).await;
    let alice = cluster.register(0, "alice").await;
    let tokens = cluster.login(2, "alice").await;
    for r in 0..3 {
        assert!(cluster.active(r, &service, access(&tokens)).await, "replica {r} before the ban");
    }
    let resp = cluster
        .http
        .post(cluster.url(1, &format!("/admin/users/{alice}/ban")))
        .bearer_auth(&admin)
        .json(&json!({"reason": "test"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    // No waiting: the first request after the ban returned.
    for r in [0, 2, 1] {
        assert!(
            !cluster.active(r, &service, access(&tokens)).await,
            "replica {r} still accepts a banned user's token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_read_from_one_replica_while_two_others_write_never_skips_or_repeats() {
    let Some(cluster) = Cluster::start(3, &[]).await else { return };
    let admin = cluster.admin_token(0).await;
    let reader = cluster.service(0, &admin).await.token;
    // Sessions to end: each logout writes one `sid` entry. Two users, under
    // the per-user session cap.
    cluster.register(1, "alice").await;
    cluster.register(2, "bob").await;
    let mut sessions = Vec::new();
    for i in 0..24 {
        let (replica, user) = if i % 2 == 0 { (1, "alice") } else { (2, "bob") };
        sessions.push((
            replica,
            cluster.login(replica, user).await["refresh_token"].as_str().unwrap().to_owned(),
        ));
    }
    let start = cluster.feed_cursor(0, &reader).await;
    let cluster = Arc::new(cluster);
    let mut writers = Vec::new();
    for (replica, refresh) in sessions {
        let cluster = Arc::clone(&cluster);
        writers.push(tokio::spawn(async move {
            cluster.post(replica, "/auth/logout", &json!({"refresh_token": refresh})).await.status()
        }));
    }
    let mut seen: Vec<i64> = Vec::new();
    let mut cursor = start.clone();
    let mut writers_done = false;
    loop {
        let page = cluster.feed(0, &reader, &cursor, 3).await;
        let entries = page["entries"].as_array().unwrap();
        seen.extend(entries.iter().map(|e| e["seq"].as_i64().unwrap()));
        cursor = page["cursor"].as_str().unwrap().to_owned();
        if writers_done && entries.is_empty() {
            break;
        }
        writers_done = writers.iter().all(|w| w.is_finished());
    }
    for w in writers {
        assert_eq!(w.await.unwrap(), 204);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "an entry repeated or came out of order: {seen:?}");
    let all = cluster.feed(1, &reader, &start, 1000).await;
    let expected: Vec<i64> =
        all["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(expected.len(), 24, "one entry per logout");
    assert_eq!(seen, expected, "the reader skipped an entry");
}
