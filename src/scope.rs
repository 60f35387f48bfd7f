//! OAuth scopes (RFC 6749 §3.3): space-delimited, case-sensitive tokens of
//! `%x21 / %x23-5B / %x5D-7E` (printable ASCII without space, `"` and `\`).

use std::collections::BTreeSet;
use std::fmt;

/// A set of scopes, kept sorted so its string form is canonical.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope must be space-separated tokens of printable ASCII, without double quotes or backslashes")]
pub struct ScopeError;

pub const MAX_SCOPE_LEN: usize = 2048;

impl ScopeSet {
    pub fn parse(input: &str) -> Result<ScopeSet, ScopeError> {
        if input.len() > MAX_SCOPE_LEN {
            return Err(ScopeError);
        }
        let mut set = BTreeSet::new();
        for token in input.split(' ').filter(|t| !t.is_empty()) {
            if !token.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)) {
                return Err(ScopeError);
            }
            set.insert(token.to_owned());
        }
        Ok(ScopeSet(set))
    }

    /// Parse a stored (trusted) value; invalid tokens are dropped.
    pub fn from_stored(stored: &str) -> ScopeSet {
        ScopeSet(stored.split_whitespace().map(str::to_owned).collect())
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, of: &ScopeSet) -> bool {
        self.0.is_subset(&of.0)
    }

    pub fn without(&self, scope: &str) -> ScopeSet {
        ScopeSet(self.0.iter().filter(|s| *s != scope).cloned().collect())
    }

    pub fn with(&self, scope: &str) -> ScopeSet {
        let mut set = self.0.clone();
        set.insert(scope.to_owned());
        ScopeSet(set)
    }

    /// The scopes present in both sets.
    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined: Vec<&str> = self.iter().collect();
        f.write_str(&joined.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_canonically() {
        let s = ScopeSet::parse("profile  openid email openid").unwrap();
        assert_eq!(s.to_string(), "email openid profile");
        assert!(ScopeSet::parse("").unwrap().is_empty());
        assert!(ScopeSet::parse("tasks:read https://api.example/x").is_ok());
    }

    #[test]
    fn refuses_characters_outside_the_rfc_grammar() {
        for bad in ["a\"b", "a\\b", "caf\u{e9}", "a\tb", "a\nb"] {
            assert_eq!(ScopeSet::parse(bad), Err(ScopeError), "{bad:?}");
        }
        assert_eq!(ScopeSet::parse(&"a ".repeat(2000)), Err(ScopeError));
    }

    #[test]
    fn subsets() {
        let all = ScopeSet::parse("a b c").unwrap();
        assert!(ScopeSet::parse("a c").unwrap().is_subset(&all));
        assert!(!ScopeSet::parse("a d").unwrap().is_subset(&all));
        assert_eq!(all.without("b").to_string(), "a c");
    }
}
