//! Validated names, parsed once at the edge.
//!
//! Every name that crosses an API boundary is parsed into one of these types by serde
//! (`try_from = "String"`), so the rest of the code never sees an invalid one and never
//! validates twice. Each error says which rule was broken, so a CI author can fix the input
//! without reading source.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name or value was rejected. The message is meant for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct InvalidValue {
    /// What kind of value this was ("service name", "image reference", ...).
    pub what: &'static str,
    /// The offending input, truncated so an enormous input never floods a log line.
    pub value: String,
    /// The rule it broke.
    pub reason: String,
}

impl InvalidValue {
    pub(crate) fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        let mut value = value.to_string();
        if value.len() > 80 {
            let mut cut = 80;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
            value.push('…');
        }
        Self {
            what,
            value,
            reason: reason.into(),
        }
    }
}

/// Checks an RFC 1123 DNS label: 1–63 characters of `a-z`, `0-9` and `-`, neither first nor
/// last a hyphen. Upper case is rejected rather than folded, so one service has one spelling.
fn check_dns_label(what: &'static str, s: &str) -> Result<(), InvalidValue> {
    if s.is_empty() {
        return Err(InvalidValue::new(what, s, "must not be empty"));
    }
    if s.len() > 63 {
        return Err(InvalidValue::new(
            what,
            s,
            format!("is {} characters long; at most 63 are allowed", s.len()),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(InvalidValue::new(
            what,
            s,
            format!("contains {c:?}; only lowercase letters, digits and '-' are allowed"),
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(InvalidValue::new(what, s, "must not start or end with '-'"));
    }
    Ok(())
}

macro_rules! validated_string {
    ($(#[$meta:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates.
            pub fn parse(s: &str) -> Result<Self, InvalidValue> {
                let check: fn(&'static str, &str) -> Result<(), InvalidValue> = $check;
                check($what, s)?;
                Ok(Self(s.to_string()))
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, InvalidValue> {
                Self::parse(&s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, InvalidValue> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

validated_string!(
    /// A service's name: a DNS label (`api`, `billing-worker`).
    ServiceName,
    "service name",
    check_dns_label
);

validated_string!(
    /// A server's name: a DNS label, the name its agent certificate carries (`web-1`).
    ServerName,
    "server name",
    check_dns_label
);

validated_string!(
    /// The name of an environment variable passed to a container: `[A-Za-z_][A-Za-z0-9_]*`,
    /// at most 255 characters. Names with `=` or spaces would be split differently by Docker
    /// than the operator intended, so they are refused rather than passed through.
    EnvName,
    "environment variable name",
    |what, s| {
        if s.is_empty() {
            return Err(InvalidValue::new(what, s, "must not be empty"));
        }
        if s.len() > 255 {
            return Err(InvalidValue::new(what, s, "is longer than 255 characters"));
        }
        let first = s.as_bytes()[0];
        if !(first.is_ascii_alphabetic() || first == b'_') {
            return Err(InvalidValue::new(
                what,
                s,
                "must start with a letter or '_'",
            ));
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
            return Err(InvalidValue::new(
                what,
                s,
                format!("contains {c:?}; only letters, digits and '_' are allowed"),
            ));
        }
        Ok(())
    }
);

validated_string!(
    /// A lock key: 1–253 characters of slash-separated segments, each made of
    /// `a-z 0-9 - _ .`; e.g. `service/api` or `migration/billing-db`. Empty segments and
    /// `.`/`..` segments are refused so keys never look like paths that alias each other.
    LockKey,
    "lock key",
    |what, s| {
        if s.is_empty() {
            return Err(InvalidValue::new(what, s, "must not be empty"));
        }
        if s.len() > 253 {
            return Err(InvalidValue::new(what, s, "is longer than 253 characters"));
        }
        for seg in s.split('/') {
            if seg.is_empty() {
                return Err(InvalidValue::new(
                    what,
                    s,
                    "has an empty segment (leading, trailing or doubled '/')",
                ));
            }
            if seg == "." || seg == ".." {
                return Err(InvalidValue::new(what, s, "has a '.' or '..' segment"));
            }
            if let Some(c) = seg.chars().find(|c| {
                !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
            }) {
                return Err(InvalidValue::new(
                    what,
                    s,
                    format!(
                        "contains {c:?}; only lowercase letters, digits, '-', '_', '.' and '/' are allowed"
                    ),
                ));
            }
        }
        Ok(())
    }
);

impl LockKey {
    /// The lock every deployment of `service` takes: `service/<name>`.
    pub fn for_service(service: &ServiceName) -> Self {
        Self(format!("service/{service}"))
    }
}

validated_string!(
    /// Who holds a lock or performs an action: free text for humans (a CI job id, a user),
    /// 1–128 printable characters, no control characters.
    Holder,
    "holder",
    |what, s| {
        if s.trim().is_empty() {
            return Err(InvalidValue::new(what, s, "must not be empty"));
        }
        if s.chars().count() > 128 {
            return Err(InvalidValue::new(what, s, "is longer than 128 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(InvalidValue::new(
                what,
                s,
                "must not contain control characters",
            ));
        }
        Ok(())
    }
);

/// A label on a server (`env=prod`): key and value, each 1–63 characters of
/// `a-z 0-9 - _ .`, used by server policy and label selectors.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label {
    key: String,
    value: String,
}

impl Label {
    /// Parses `key=value`.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        const WHAT: &str = "label";
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| InvalidValue::new(WHAT, s, "must have the form key=value"))?;
        for (part, name) in [(k, "key"), (v, "value")] {
            if part.is_empty() || part.len() > 63 {
                return Err(InvalidValue::new(
                    WHAT,
                    s,
                    format!("{name} must be 1 to 63 characters"),
                ));
            }
            if let Some(c) = part.chars().find(|c| {
                !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
            }) {
                return Err(InvalidValue::new(
                    WHAT,
                    s,
                    format!("{name} contains {c:?}; only a-z, 0-9, '-', '_' and '.' are allowed"),
                ));
            }
        }
        Ok(Self {
            key: k.to_string(),
            value: v.to_string(),
        })
    }

    /// The label's key (`env`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The label's value (`prod`).
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl TryFrom<String> for Label {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, InvalidValue> {
        Self::parse(&s)
    }
}

impl From<Label> for String {
    fn from(l: Label) -> String {
        l.to_string()
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

impl std::str::FromStr for Label {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "api", "web-1", "a1-b2", &"x".repeat(63)] {
            ServiceName::parse(ok).unwrap();
            ServerName::parse(ok).unwrap();
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Api",
            "a_b",
            "a.b",
            "a b",
            &"x".repeat(64),
            "é",
        ] {
            let e = ServiceName::parse(bad).unwrap_err();
            assert_eq!(e.what, "service name");
            assert!(!e.reason.is_empty());
        }
    }

    #[test]
    fn error_says_what_and_why() {
        let e = ServiceName::parse("Web").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid service name \"Web\": contains 'W'; only lowercase letters, digits and '-' are allowed"
        );
    }

    #[test]
    fn long_inputs_are_truncated_in_errors() {
        let e = ServiceName::parse(&"Ä".repeat(1000)).unwrap_err();
        assert!(e.value.len() < 100);
    }

    #[test]
    fn env_names() {
        for ok in ["A", "_", "DATABASE_URL", "a1", "_X_9"] {
            EnvName::parse(ok).unwrap();
        }
        for bad in ["", "1A", "A-B", "A=B", "A B", "Ä"] {
            EnvName::parse(bad).unwrap_err();
        }
    }

    #[test]
    fn lock_keys() {
        for ok in ["service/api", "migration/db.main", "x", "a_b/c-d/e.f"] {
            LockKey::parse(ok).unwrap();
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            "./a",
            "A",
            "a b",
            &"a".repeat(254),
        ] {
            LockKey::parse(bad).unwrap_err();
        }
        let api = ServiceName::parse("api").unwrap();
        assert_eq!(LockKey::for_service(&api).as_str(), "service/api");
    }

    #[test]
    fn holders() {
        Holder::parse("ci job #42 (gitlab)").unwrap();
        Holder::parse("").unwrap_err();
        Holder::parse("   ").unwrap_err();
        Holder::parse("a\nb").unwrap_err();
        Holder::parse(&"x".repeat(129)).unwrap_err();
    }

    #[test]
    fn labels() {
        let l = Label::parse("env=prod").unwrap();
        assert_eq!((l.key(), l.value()), ("env", "prod"));
        assert_eq!(l.to_string(), "env=prod");
        for bad in ["env", "=prod", "env=", "Env=prod", "env=pr od"] {
            Label::parse(bad).unwrap_err();
        }
    }

    #[test]
    fn serde_validates() {
        let ok: ServiceName = serde_json::from_str("\"api\"").unwrap();
        assert_eq!(ok.as_str(), "api");
        let err = serde_json::from_str::<ServiceName>("\"API\"").unwrap_err();
        assert!(err.to_string().contains("invalid service name"));
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"api\"");
    }
}
