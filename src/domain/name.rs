//! Display names of users and rooms.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A name people see: trimmed, 1 to 100 characters (Unicode scalar values), no control
/// character, no bidirectional override or isolate, at least one visible character.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = r"\S", example = "Ana")]
pub struct Name(String);

/// Why a name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {} characters", Name::MAX_CHARS)]
    TooLong,
    #[error("must not contain control characters")]
    Control,
    #[error("must not contain bidirectional override or isolate characters")]
    Bidi,
    #[error("must contain a visible character")]
    Invisible,
}

impl Name {
    /// The longest name accepted, counted in Unicode scalar values after trimming.
    pub const MAX_CHARS: usize = 100;

    /// Trims surrounding white space and checks the length, then that other users will
    /// see what they are shown: no control character, no bidirectional override or
    /// isolate, and at least one character that is not invisible on its own.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let trimmed = raw.trim();
        match trimmed.chars().count() {
            0 => return Err(NameError::Empty),
            n if n > Self::MAX_CHARS => return Err(NameError::TooLong),
            _ => {}
        }
        if trimmed.chars().any(char::is_control) {
            return Err(NameError::Control);
        }
        if trimmed.chars().any(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')) {
            return Err(NameError::Bidi);
        }
        if !trimmed.chars().any(is_visible) {
            return Err(NameError::Invisible);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a character shows something by itself: not a format character (Cf), a separator
/// (Zs, Zl, Zp), a mark that only decorates another (Mn) or a Hangul filler.
fn is_visible(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    let invisible = matches!(
        c.general_category(),
        G::Format | G::SpaceSeparator | G::LineSeparator | G::ParagraphSeparator | G::NonspacingMark
    ) || matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}');
    !invisible
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed() {
        assert_eq!(Name::parse("  Ana \n").map(|n| n.0), Ok("Ana".to_owned()));
    }

    #[test]
    fn blank_names_are_empty() {
        assert_eq!(Name::parse(" \t "), Err(NameError::Empty));
        assert_eq!(Name::parse(""), Err(NameError::Empty));
    }

    #[test]
    fn names_people_cannot_see_are_refused() {
        let cases = [
            ("\u{200B}", NameError::Invisible),
            ("\u{FEFF}", NameError::Invisible),
            ("\u{3164}", NameError::Invisible),
            ("\u{115F}\u{1160}", NameError::Invisible),
            ("\u{FFA0}", NameError::Invisible),
            ("\u{0301}", NameError::Invisible),
            ("\u{200B}\u{200D}\u{2060}", NameError::Invisible),
            ("Ana\u{0000}", NameError::Control),
            ("A\u{0007}na", NameError::Control),
            ("An\u{0085}a", NameError::Control),
            ("\u{202E}anA", NameError::Bidi),
            ("Ana\u{2066}", NameError::Bidi),
            ("\u{202A}Ana\u{202C}", NameError::Bidi),
        ];
        for (raw, error) in cases {
            assert_eq!(Name::parse(raw), Err(error), "{raw:?}");
        }
    }

    #[test]
    fn names_people_write_keep_working() {
        for raw in [
            "Ana",
            "👩\u{200D}👩\u{200D}👧", // a family: emoji joined by ZWJ
            "🏳\u{FE0F}\u{200D}🌈",    // a flag with a variation selector
            "می\u{200C}خواهم",        // Persian with a ZWNJ
            "Jose\u{0301}",           // a combining acute after a letter
            "Zoë O'Brien-Łukasz",
            "李小龍",
            "ﾊﾝｸﾞﾙ",
            "Ana María",
        ] {
            assert_eq!(Name::parse(raw).map(|n| n.0), Ok(raw.to_owned()), "{raw:?}");
        }
    }

    #[test]
    fn length_counts_scalar_values_not_bytes() {
        let hundred_accents = "é".repeat(100);
        assert!(Name::parse(&hundred_accents).is_ok());
        assert_eq!(Name::parse(&"é".repeat(101)), Err(NameError::TooLong));
        assert!(Name::parse(&format!("  {hundred_accents}  ")).is_ok());
    }
}
