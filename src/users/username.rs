//! Usernames: parsed once at the edge, reused as columns.
//!
//! A username is stored in its NFKC form (what the user typed, with
//! compatibility characters such as fullwidth letters folded) and compared
//! through a key: NFKC, then Unicode default case folding, then NFKC again
//! (case folding can denormalize). Letters, marks and decimal digits of every
//! script are welcome; `.`, `_` and `-` may separate them. Control, format
//! (zero-width, bidi) and whitespace characters never are: they make two
//! names look alike or hide part of one.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

pub const MIN_LEN: usize = 2;
pub const MAX_LEN: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username {
    display: String,
    key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("username must be at least {MIN_LEN} characters")]
    TooShort,
    #[error("username must be at most {MAX_LEN} characters")]
    TooLong,
    #[error("username may only contain letters, digits, '.', '_' and '-' (found {0:?})")]
    InvalidCharacter(char),
    #[error("username must start with a letter or a digit")]
    InvalidStart,
}

impl Username {
    pub fn parse(input: &str) -> Result<Username, UsernameError> {
        // Refuse absurd input before normalizing it.
        if input.len() > MAX_LEN * 4 * 4 {
            return Err(UsernameError::TooLong);
        }
        let display: String = input.nfkc().collect();
        let count = display.chars().count();
        if count < MIN_LEN {
            return Err(UsernameError::TooShort);
        }
        if count > MAX_LEN {
            return Err(UsernameError::TooLong);
        }
        for c in display.chars() {
            if !is_allowed(c) {
                return Err(UsernameError::InvalidCharacter(c));
            }
        }
        if !display.chars().next().is_some_and(is_word_start) {
            return Err(UsernameError::InvalidStart);
        }
        let key = comparison_key(&display);
        Ok(Username { display, key })
    }

    /// The form to show and store.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The form to compare and to index uniquely.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// NFKC ∘ case fold ∘ NFKC: equal for names that differ only by case or
/// Unicode compatibility form.
pub fn comparison_key(input: &str) -> String {
    let nfkc: String = input.nfkc().collect();
    let folded = unicase::UniCase::new(nfkc.as_str()).to_folded_case();
    folded.nfkc().collect()
}

fn is_word_start(c: char) -> bool {
    matches!(c.general_category_group(), GeneralCategoryGroup::Letter)
        || c.general_category() == unicode_properties::GeneralCategory::DecimalNumber
}

fn is_allowed(c: char) -> bool {
    use unicode_properties::GeneralCategory as G;
    matches!(c, '.' | '_' | '-')
        || matches!(
            c.general_category(),
            G::UppercaseLetter
                | G::LowercaseLetter
                | G::TitlecaseLetter
                | G::ModifierLetter
                | G::OtherLetter
                | G::NonspacingMark
                | G::SpacingMark
                | G::EnclosingMark
                | G::DecimalNumber
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_compatibility_forms_share_one_key() {
        let a = Username::parse("Alice").unwrap();
        for other in ["alice", "ALICE", "Ａｌｉｃｅ", "aLiCe"] {
            assert_eq!(Username::parse(other).unwrap().key(), a.key(), "{other}");
        }
        assert_eq!(Username::parse("Ａｌｉｃｅ").unwrap().as_str(), "Alice");
        // German sharp s folds to "ss".
        assert_eq!(Username::parse("straße").unwrap().key(), Username::parse("STRASSE").unwrap().key());
        // Composed and decomposed accents are the same name.
        assert_eq!(Username::parse("José").unwrap().key(), Username::parse("Jose\u{301}").unwrap().key());
    }

    #[test]
    fn letters_and_digits_of_any_script_are_welcome() {
        for name in ["日本語", "Ωμέγα", "क्षत्रिय", "مرحبا", "user_42", "a.b-c", "٣٤٥abc", "李明"]
        {
            assert!(Username::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn control_invisible_and_space_characters_are_refused() {
        for name in [
            "ali\u{200B}ce",
            "ali\u{202E}ce",
            "ali ce",
            "ali\tce",
            "ali\u{0}ce",
            "al\u{FEFF}ice",
            "bob@x",
            "a/b",
            "😀bob",
        ] {
            assert!(matches!(Username::parse(name), Err(UsernameError::InvalidCharacter(_))), "{name:?}");
        }
    }

    #[test]
    fn length_and_start_are_checked() {
        assert_eq!(Username::parse("a"), Err(UsernameError::TooShort));
        assert_eq!(Username::parse(""), Err(UsernameError::TooShort));
        assert_eq!(Username::parse(&"a".repeat(65)), Err(UsernameError::TooLong));
        assert!(Username::parse(&"a".repeat(64)).is_ok());
        assert_eq!(Username::parse(&"a".repeat(100_000)), Err(UsernameError::TooLong));
        assert_eq!(Username::parse("_bob"), Err(UsernameError::InvalidStart));
        assert_eq!(Username::parse("\u{301}bob"), Err(UsernameError::InvalidStart));
    }

    #[test]
    fn the_key_is_stable_under_reparsing() {
        for name in ["Straße", "ǅemal", "ΣΊΣΥΦΟΣ", "İstanbul", "ﬁle"] {
            let key = comparison_key(name);
            assert_eq!(comparison_key(&key), key, "{name}");
        }
    }
}
