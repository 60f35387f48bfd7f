//! Small helpers for SQL that must mean the same on PostgreSQL and SQLite.

/// Can `text` be bound to a query on both backends?
///
/// PostgreSQL's `text` cannot hold U+0000: binding it fails the query
/// (`invalid byte sequence for encoding "UTF8": 0x00`), while SQLite stores
/// it. Rust strings are valid UTF-8, so NUL is the only character the two
/// disagree on. The HTTP edge refuses such input with a 400
/// (`http::validate`); lookups by a text key treat it as matching no row.
pub fn is_storable(text: &str) -> bool {
    !text.contains('\0')
}

/// The complaint about text that is not [`is_storable`].
pub const NOT_STORABLE: &str = "must not contain NUL characters";

/// Escape `%`, `_` and `\` for a LIKE pattern with `\` as the escape
/// character, so user input is matched literally.
pub fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    #[test]
    fn nul_is_the_one_character_both_backends_cannot_store() {
        assert!(super::is_storable("caf\u{e9} \u{1f512} \t\n"));
        assert!(!super::is_storable("a\0b"));
    }

    #[test]
    fn wildcards_become_literals() {
        assert_eq!(super::like_escape(r"50%_off\now"), r"50\%\_off\\now");
    }
}
