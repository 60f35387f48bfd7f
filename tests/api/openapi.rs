//! The committed OpenAPI document is the one the binary generates.

use serde_json::Value;

use crate::helpers::{Backend, TestApp};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");

#[test]
fn openapi_is_fresh() {
    let generated = latchkey::http::spec_json();
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(std::path::Path::new(COMMITTED).parent().unwrap()).unwrap();
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test openapi_is_fresh` and commit it"
    );
}

#[test]
fn every_operation_has_a_stable_operation_id_and_documented_errors() {
    let spec: Value = serde_json::from_str(&latchkey::http::spec_json()).unwrap();
    let mut seen = std::collections::HashSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id =
                op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(seen.insert(id.to_owned()), "duplicate operationId {id}");
        }
    }
    assert!(spec["components"]["schemas"]["ErrorBody"].is_object());
    let me = &spec["paths"]["/auth/me"]["get"]["responses"];
    let schema = me["401"]["content"].as_object().unwrap().values().next().unwrap()["schema"]["$ref"].clone();
    assert_eq!(schema, "#/components/schemas/ErrorBody", "401 documented with ErrorBody");
}

#[tokio::test]
async fn the_live_spec_equals_the_generated_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let live: Value = app.get("/openapi.json").await.json().await.unwrap();
    let generated: Value = serde_json::from_str(&latchkey::http::spec_json()).unwrap();
    assert_eq!(live, generated);
    assert_eq!(app.get("/docs").await.status(), 200);
}
