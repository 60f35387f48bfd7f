//! Edge checks for text that reaches the database.
//!
//! A NUL character cannot be stored or compared on PostgreSQL
//! ([`crate::sql::is_storable`]), so every text input that reaches a query
//! is checked here, before any handler runs, and answers 400
//! `invalid_request` with the usual error body on both backends:
//!
//! - JSON fields and query or path parameters:
//!   `#[oai(validator(custom = "Storable"))]` (with `Storable` imported);
//! - form fields, which poem-openapi parses with serde (its validators do
//!   not run there): `#[serde(default, deserialize_with = "crate::http::validate::storable")]`.
//!
//! Both fail the request's parsing, which [`super::error::normalize_errors`]
//! turns into the error body. Inputs that never reach a query as text
//! (passwords, codes and tokens, which are hashed, decoded or verified
//! first) need no check.

use std::fmt;

use poem_openapi::validation::Validator;
use serde::{Deserialize, Deserializer};

use crate::sql;

/// poem-openapi validator: the text can be bound to a query.
pub struct Storable;

impl fmt::Display for Storable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(sql::NOT_STORABLE)
    }
}

impl<T: AsRef<str>> Validator<T> for Storable {
    fn check(&self, value: &T) -> bool {
        sql::is_storable(value.as_ref())
    }
}

/// serde `deserialize_with` for an optional form field: refuse text that
/// cannot be bound to a query.
pub fn storable<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    match value {
        Some(text) if !sql::is_storable(&text) => {
            Err(serde::de::Error::custom(format!("text fields {}", sql::NOT_STORABLE)))
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Form {
        #[serde(default, deserialize_with = "storable")]
        client_id: Option<String>,
    }

    #[test]
    fn forms_refuse_nul_and_keep_everything_else() {
        let parse = |body: &str| serde_urlencoded::from_str::<Form>(body);
        assert_eq!(parse("client_id=caf%C3%A9").unwrap().client_id.as_deref(), Some("café"));
        assert_eq!(parse("").unwrap().client_id, None);
        let err = parse("client_id=a%00b").unwrap_err().to_string();
        assert!(err.contains("NUL"), "{err}");
        assert!(Validator::<String>::check(&Storable, &"ok".to_owned()));
        assert!(!Validator::<String>::check(&Storable, &"a\0b".to_owned()));
    }
}
