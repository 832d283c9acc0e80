//! Display names of users and rooms.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A trimmed name of 1 to 100 Unicode scalar values: valid by construction.
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
}

impl Name {
    /// The longest name accepted, counted in Unicode scalar values after trimming.
    pub const MAX_CHARS: usize = 100;

    /// Trims surrounding white space and checks the length.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let trimmed = raw.trim();
        match trimmed.chars().count() {
            0 => Err(NameError::Empty),
            n if n > Self::MAX_CHARS => Err(NameError::TooLong),
            _ => Ok(Self(trimmed.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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
    fn length_counts_scalar_values_not_bytes() {
        let hundred_accents = "é".repeat(100);
        assert!(Name::parse(&hundred_accents).is_ok());
        assert_eq!(Name::parse(&"é".repeat(101)), Err(NameError::TooLong));
        assert!(Name::parse(&format!("  {hundred_accents}  ")).is_ok());
    }
}
