use serde_json::Value;

use crate::db_test;
use crate::helpers::TestApp;

db_test!(async fn health_and_readiness_answer(backend) {
    let app = TestApp::spawn(backend).await;

    let live = app.get("/healthz").await;
    assert_eq!(live.status(), 200);
    assert_eq!(live.json::<Value>().await.unwrap()["status"], "ok");

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ok");
});

db_test!(async fn readiness_fails_when_the_database_is_gone(backend) {
    let app = TestApp::spawn(backend).await;
    // Arrange: close the pool under the server.
    app.state.db.clone().close().await.unwrap();
    // Act / Assert
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let live = app.get("/healthz").await;
    assert_eq!(live.status(), 200, "liveness does not depend on the database");
});
