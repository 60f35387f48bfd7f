//! The example browser app (`examples/spa/`, served by
//! `examples/spa_server.rs`) and the tasks API it calls, for browser tests.

use std::sync::Arc;

use latchkey::clock::Clock;
use latchkey_verify::{Verifier, VerifierConfig};
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};

use crate::helpers::TestApp;
use crate::spa_example::spa_server;
use crate::tasks_e2e::tasks_api;

/// The SPA's server: bound first (latchkey must list its origin for CORS
/// before it starts), served once latchkey's issuer is known.
pub struct SpaServer {
    /// `http://127.0.0.1:<port>`
    pub origin: String,
    acceptor: Option<TcpAcceptor>,
}

impl SpaServer {
    pub async fn bind() -> SpaServer {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("bind");
        let port = acceptor.local_addr()[0].as_socket_addr().expect("addr").port();
        SpaServer { origin: format!("http://127.0.0.1:{port}"), acceptor: Some(acceptor) }
    }

    /// Serve `examples/spa/` telling the pages where latchkey and the tasks API are.
    pub fn serve(mut self, issuer: &str, client_id: &str, tasks_api: &str) -> SpaServer {
        let config = spa_server::SpaConfig::new(issuer, client_id, tasks_api).expect("spa config");
        let dir = format!("{}/examples/spa", env!("CARGO_MANIFEST_DIR"));
        let acceptor = self.acceptor.take().expect("served once");
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(spa_server::routes(dir, config)));
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }
}

/// The tasks API verifying `app`'s tokens (on the app's mock clock), callable
/// from pages on `cors_origins`. Returns its base URL.
pub async fn serve_tasks(app: &TestApp, cors_origins: Vec<String>) -> String {
    let mut config = VerifierConfig::new(app.state.issuer().to_owned(), "latchkey");
    let clock = Arc::clone(&app.clock);
    config.clock = Arc::new(move || clock.now().timestamp());
    let verifier = Verifier::discover(config).await.expect("the tasks API discovers latchkey");
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("bind");
    let addr = *acceptor.local_addr()[0].as_socket_addr().expect("addr");
    let api = tasks_api::app_with_cors(verifier, Arc::new(tasks_api::Store::default()), cors_origins);
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(api));
    format!("http://{addr}")
}
