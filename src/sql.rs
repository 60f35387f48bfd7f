//! Small helpers for SQL that must mean the same on PostgreSQL and SQLite.

/// Escape `%`, `_` and `\` for a LIKE pattern with `\` as the escape
/// character, so user input is matched literally.
pub fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcards_become_literals() {
        assert_eq!(super::like_escape(r"50%_off\now"), r"50\%\_off\\now");
    }
}
