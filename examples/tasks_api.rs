//! tasks_api: the task service from latchkey's original design, as a
//! separate service that verifies latchkey access tokens **offline** with
//! `latchkey-verify` and never calls latchkey per request.
//!
//! - `GET /tasks` (scope `tasks:read`): your tasks; users with the `admin`
//!   role see everyone's.
//! - `POST /tasks` (scope `tasks:write`): `{"title": "…"}`, owned by you.
//! - `GET|PATCH|DELETE /tasks/{id}`: only your own (admins: any).
//!
//! Run latchkey with the task scopes available, then this service:
//!
//! ```text
//! LATCHKEY_USER_SCOPES="openid profile email tasks:read tasks:write" cargo run --release
//! cargo run --example tasks_api          # listens on 127.0.0.1:8081
//! ```
//!
//! `TASKS_ISSUER` (default `http://127.0.0.1:8080`), `TASKS_AUDIENCE`
//! (`latchkey`), `TASKS_LISTEN` (`127.0.0.1:8081`). With `TASKS_CLIENT_ID`
//! and `TASKS_CLIENT_SECRET` of a client holding scope `revocations:read`,
//! the service also follows latchkey's revocation feed, so a banned user is
//! refused within seconds instead of when their token expires.
//!
//! `TASKS_CORS_ORIGINS` (comma-separated exact origins, e.g.
//! `http://127.0.0.1:8082` for the example SPA, see `spa_server.rs`) lets
//! pages on those origins call the API from the browser. Tokens travel in
//! the `Authorization` header, never in cookies, so CORS here allows no
//! credentials; a request from any other origin is refused with 403.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use latchkey_verify::poem_support::{Authenticated, require_scope};
use latchkey_verify::{Claims, ClientCredentials, Verifier, VerifierConfig};
use poem::http::Method;
use poem::http::StatusCode;
use poem::middleware::Cors;
use poem::web::{Data, Json, Path};
use poem::{Endpoint, EndpointExt, Route, get, handler};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Task {
    pub id: u64,
    /// The `sub` of the token that created it.
    pub owner: String,
    pub title: String,
    pub done: bool,
}

#[derive(Default)]
pub struct Store {
    next: AtomicU64,
    tasks: Mutex<BTreeMap<u64, Task>>,
}

#[derive(Deserialize)]
struct NewTask {
    title: String,
}

#[derive(Deserialize)]
struct TaskPatch {
    title: Option<String>,
    done: Option<bool>,
}

fn may_see(claims: &Claims, task: &Task) -> bool {
    task.owner == claims.sub || claims.has_role("admin")
}

fn valid_title(title: &str) -> poem::Result<String> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(poem::Error::from_string("title must be 1 to 200 characters", StatusCode::BAD_REQUEST));
    }
    Ok(title.to_owned())
}

fn not_found() -> poem::Error {
    // Another user's task is reported as missing: its existence is not ours to reveal.
    poem::Error::from_string("no such task", StatusCode::NOT_FOUND)
}

#[handler]
async fn list(auth: Authenticated, store: Data<&Arc<Store>>) -> poem::Result<Json<Vec<Task>>> {
    require_scope(&auth.0, "tasks:read")?;
    let tasks = store.tasks.lock().await;
    Ok(Json(tasks.values().filter(|t| may_see(&auth.0, t)).cloned().collect()))
}

#[handler]
async fn create(
    auth: Authenticated,
    store: Data<&Arc<Store>>,
    body: Json<NewTask>,
) -> poem::Result<(StatusCode, Json<Task>)> {
    require_scope(&auth.0, "tasks:write")?;
    let title = valid_title(&body.0.title)?;
    let id = store.next.fetch_add(1, Ordering::SeqCst) + 1;
    let task = Task { id, owner: auth.0.sub.clone(), title, done: false };
    store.tasks.lock().await.insert(id, task.clone());
    Ok((StatusCode::CREATED, Json(task)))
}

#[handler]
async fn show(auth: Authenticated, store: Data<&Arc<Store>>, id: Path<u64>) -> poem::Result<Json<Task>> {
    require_scope(&auth.0, "tasks:read")?;
    let tasks = store.tasks.lock().await;
    tasks.get(&id.0).filter(|t| may_see(&auth.0, t)).cloned().map(Json).ok_or_else(not_found)
}

#[handler]
async fn update(
    auth: Authenticated,
    store: Data<&Arc<Store>>,
    id: Path<u64>,
    body: Json<TaskPatch>,
) -> poem::Result<Json<Task>> {
    require_scope(&auth.0, "tasks:write")?;
    let mut tasks = store.tasks.lock().await;
    let task = tasks.get_mut(&id.0).filter(|t| may_see(&auth.0, t)).ok_or_else(not_found)?;
    if let Some(title) = body.0.title {
        task.title = valid_title(&title)?;
    }
    if let Some(done) = body.0.done {
        task.done = done;
    }
    Ok(Json(task.clone()))
}

#[handler]
async fn remove(auth: Authenticated, store: Data<&Arc<Store>>, id: Path<u64>) -> poem::Result<StatusCode> {
    require_scope(&auth.0, "tasks:write")?;
    let mut tasks = store.tasks.lock().await;
    if !tasks.get(&id.0).is_some_and(|t| may_see(&auth.0, t)) {
        return Err(not_found());
    }
    tasks.remove(&id.0);
    Ok(StatusCode::NO_CONTENT)
}

/// The routes, given a verifier and a store, for callers that are not
/// browsers (no CORS).
#[allow(dead_code)] // used by the tests
pub fn app(verifier: Verifier, store: Arc<Store>) -> impl Endpoint {
    app_with_cors(verifier, store, Vec::new())
}

/// The routes, callable from pages on `cors_origins` (exact origins such as
/// `http://127.0.0.1:8082`). Requests without an `Origin` header (servers,
/// curl) are unaffected.
pub fn app_with_cors(verifier: Verifier, store: Arc<Store>, cors_origins: Vec<String>) -> impl Endpoint {
    // An explicit predicate: poem's `Cors` with no origins would allow all.
    let cors = Cors::new()
        .allow_origins_fn(move |origin| cors_origins.iter().any(|o| o == origin))
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers(["authorization", "content-type"])
        .expose_headers(["www-authenticate"])
        .max_age(600);
    Route::new()
        .at("/tasks", get(list).post(create))
        .at("/tasks/:id", get(show).patch(update).delete(remove))
        .data(verifier)
        .data(store)
        .with(cors)
}

/// `TASKS_CORS_ORIGINS`: comma-separated origins, each `scheme://host[:port]`
/// exactly (no path, no `*`).
pub fn parse_origins(value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let url = url::Url::parse(o).map_err(|e| format!("TASKS_CORS_ORIGINS: {o:?}: {e}"))?;
            let origin = url.origin().ascii_serialization();
            if origin != o || !matches!(url.scheme(), "http" | "https") {
                return Err(format!("TASKS_CORS_ORIGINS: {o:?} is not an origin; write {origin:?}"));
            }
            Ok(origin)
        })
        .collect()
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let issuer = env("TASKS_ISSUER", "http://127.0.0.1:8080");
    let listen = env("TASKS_LISTEN", "127.0.0.1:8081");
    let cors_origins = parse_origins(&env("TASKS_CORS_ORIGINS", ""))?;
    let verifier =
        Verifier::discover(VerifierConfig::new(issuer.clone(), env("TASKS_AUDIENCE", "latchkey"))).await?;
    let _feed = match (std::env::var("TASKS_CLIENT_ID"), std::env::var("TASKS_CLIENT_SECRET")) {
        (Ok(id), Ok(secret)) => {
            let credentials = ClientCredentials::new(
                format!("{issuer}/oauth/token"),
                id,
                secret,
                None,
                verifier.config().http.clone(),
            );
            Some(verifier.follow_revocations(credentials))
        }
        _ => None,
    };
    println!("tasks API on http://{listen}, trusting tokens from {issuer}");
    poem::Server::new(poem::listener::TcpListener::bind(listen))
        .run(app_with_cors(verifier, Arc::new(Store::default()), cors_origins))
        .await?;
    Ok(())
}
