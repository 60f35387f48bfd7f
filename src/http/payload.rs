//! A JSON payload serialized ahead of time.
//!
//! The JWKS is requested by every relying service and never changes between
//! rotations, so it is serialized once per key-set change and served as
//! bytes. Serializing per request with `Json<T>` halves poem's throughput on
//! this machine. `T` only describes the schema for the OpenAPI document.

use std::marker::PhantomData;

use bytes::Bytes;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;

pub struct RawJson<T> {
    bytes: Bytes,
    schema: PhantomData<fn() -> T>,
}

impl<T> RawJson<T> {
    pub fn new(bytes: Bytes) -> Self {
        RawJson { bytes, schema: PhantomData }
    }
}

impl<T: Type> Payload for RawJson<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Send> IntoResponse for RawJson<T> {
    fn into_response(self) -> Response {
        Response::builder().content_type("application/json").body(self.bytes)
    }
}
