use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A session's name: safe to use as one path component on every platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionName(String);

/// Why a session name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing was given.
    #[error("a session name cannot be empty")]
    Empty,
    /// Longer than [`SessionName::MAX_LEN`]; holds the length in characters.
    #[error("session name is {0} characters long; the limit is {max}", max = SessionName::MAX_LEN)]
    TooLong(usize),
    /// A character or position a file name cannot safely carry.
    #[error(
        "session name '{name}' contains {what}; use letters, digits, '-', '_' and '.' (not first)"
    )]
    BadChar {
        /// The name as given, escaped so control characters print visibly.
        name: String,
        /// What was wrong, in words ("a path separator", "white space").
        what: String,
    },
}

impl SessionName {
    /// The longest name accepted, in characters.
    pub const MAX_LEN: usize = 64;

    /// Checks `name` and wraps it; the error says what to change.
    pub fn new(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        let len = name.chars().count();
        if len > Self::MAX_LEN {
            return Err(NameError::TooLong(len));
        }
        let bad = |what: &str| NameError::BadChar {
            name: name.escape_default().to_string(),
            what: what.to_string(),
        };
        if name.starts_with('.') {
            return Err(bad("a leading '.'"));
        }
        if name.starts_with('-') {
            return Err(bad("a leading '-'"));
        }
        for c in name.chars() {
            match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => {}
                '/' | '\\' => return Err(bad("a path separator")),
                c if c.is_control() => return Err(bad("a control character")),
                c if c.is_whitespace() => return Err(bad("white space")),
                c => return Err(bad(&format!("'{c}'"))),
            }
        }
        Ok(Self(name.to_string()))
    }

    /// The validated name, usable as a file name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SessionName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for SessionName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["work", "my-notes", "a.b_c", "X1", &"x".repeat(64)] {
            assert_eq!(SessionName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_names_that_could_escape_or_confuse() {
        for bad in [
            "", "..", ".", ".hidden", "a/b", "a\\b", "../x", "a b", "tab\t", "nul\0", "-x", "é",
        ] {
            assert!(SessionName::new(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            SessionName::new(&"x".repeat(65)),
            Err(NameError::TooLong(65))
        );
    }

    #[test]
    fn error_says_what_is_allowed() {
        let err = SessionName::new("a/b").unwrap_err().to_string();
        assert_eq!(
            err,
            "session name 'a/b' contains a path separator; use letters, digits, '-', '_' and '.' (not first)"
        );
    }
}
