//! Docker image references: `[registry[:port]/]repository[:tag][@digest]`.
//!
//! The grammar is Docker's own (distribution/reference): the first path component is a
//! registry when it contains `.` or `:` or is `localhost`; repository components are
//! lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`; a tag is
//! `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; a digest is `algorithm:hex`. Parsing here means the
//! agent never hands Docker a string Docker would interpret differently than we did.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::InvalidValue;

const WHAT: &str = "image reference";

/// A parsed image reference. Displays back to the exact canonical text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    registry: Option<String>,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses and validates a reference.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let err = |reason: &str| InvalidValue::new(WHAT, s, reason);
        if s.is_empty() {
            return Err(err("must not be empty"));
        }
        if s.len() > 512 {
            return Err(err("is longer than 512 characters"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                check_digest(d).map_err(|r| err(&r))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a ':' before it is a
        // registry port).
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|sl| colon > sl) => {
                let tag = &rest[colon + 1..];
                check_tag(tag).map_err(|r| err(&r))?;
                (&rest[..colon], Some(tag.to_string()))
            }
            _ => (rest, None),
        };
        if name.is_empty() {
            return Err(err("has no repository name"));
        }
        if name.len() > 255 {
            return Err(err("repository name is longer than 255 characters"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                check_registry(first).map_err(|r| err(&r))?;
                (Some(first.to_string()), remainder)
            }
            _ => (None, name),
        };
        for component in repository.split('/') {
            check_path_component(component).map_err(|r| err(&r))?;
        }
        Ok(Self {
            registry,
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// The registry host (and port), if the reference names one.
    pub fn registry(&self) -> Option<&str> {
        self.registry.as_deref()
    }

    /// The repository path (`library/nginx`, `team/api`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag as written, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:…`), if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The name without tag or digest: `[registry/]repository`.
    pub fn name(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.repository),
            None => self.repository.clone(),
        }
    }

    /// The tag Docker will use: the given one, or `latest` when neither tag nor digest is set.
    pub fn effective_tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }
}

pub(crate) fn check_registry(host: &str) -> Result<(), String> {
    let (h, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!(
                "registry port {p:?} is not a number from 0 to 65535"
            ));
        }
    }
    for comp in h.split('.') {
        let ok = !comp.is_empty()
            && comp.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !comp.starts_with('-')
            && !comp.ends_with('-');
        if !ok {
            return Err(format!("registry host {h:?} is not a valid host name"));
        }
    }
    Ok(())
}

fn check_path_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("repository has an empty path component".into());
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(format!(
            "repository component {c:?} must start and end with a lowercase letter or digit"
        ));
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__', or one or more '-'.
        let start = i;
        match b {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => {
                return Err(format!(
                    "repository component {c:?} contains {:?}; only lowercase letters, digits, '.', '_', '__' and '-' are allowed",
                    b as char
                ))
            }
        }
        if i >= bytes.len() || !alnum(bytes[i]) {
            // Quote the separator and the character after it, which may be multi-byte.
            let end = c[i..]
                .chars()
                .next()
                .map_or(c.len(), |ch| i + ch.len_utf8());
            return Err(format!(
                "repository component {c:?} has an invalid separator {:?}",
                &c[start..end]
            ));
        }
    }
    Ok(())
}

fn check_tag(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("tag after ':' is empty".into());
    }
    if t.len() > 128 {
        return Err("tag is longer than 128 characters".into());
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = t.as_bytes();
    if !word(bytes[0]) {
        return Err(format!("tag {t:?} must start with a letter, digit or '_'"));
    }
    if let Some(b) = bytes
        .iter()
        .find(|b| !(word(**b) || **b == b'.' || **b == b'-'))
    {
        return Err(format!(
            "tag {t:?} contains {:?}; only letters, digits, '_', '.' and '-' are allowed",
            *b as char
        ));
    }
    Ok(())
}

fn check_digest(d: &str) -> Result<(), String> {
    let (algo, hex) = d
        .split_once(':')
        .ok_or_else(|| format!("digest {d:?} must have the form algorithm:hex"))?;
    if algo.is_empty() || !algo.as_bytes()[0].is_ascii_alphabetic() {
        return Err(format!(
            "digest algorithm {algo:?} must start with a letter"
        ));
    }
    if !algo
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-' | b'_'))
    {
        return Err(format!("digest algorithm {algo:?} has invalid characters"));
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("digest must be hexadecimal".into());
    }
    match algo {
        "sha256" if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) => {
            Err("a sha256 digest is exactly 64 lowercase hex digits".into())
        }
        _ if hex.len() < 32 => Err("digest is shorter than 32 hex digits".into()),
        _ => Ok(()),
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for ImageRef {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, InvalidValue> {
        Self::parse(&s)
    }
}

impl From<ImageRef> for String {
    fn from(i: ImageRef) -> String {
        i.to_string()
    }
}

impl std::str::FromStr for ImageRef {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parts() {
        let i = ImageRef::parse("nginx").unwrap();
        assert_eq!(
            (i.registry(), i.repository(), i.tag(), i.digest()),
            (None, "nginx", None, None)
        );
        assert_eq!(i.effective_tag(), Some("latest"));

        let i = ImageRef::parse("localhost:5000/team/api:v1.2-rc_3").unwrap();
        assert_eq!(i.registry(), Some("localhost:5000"));
        assert_eq!(i.repository(), "team/api");
        assert_eq!(i.tag(), Some("v1.2-rc_3"));
        assert_eq!(i.name(), "localhost:5000/team/api");

        let i = ImageRef::parse(&format!("ghcr.io/org/app@{SHA}")).unwrap();
        assert_eq!(i.registry(), Some("ghcr.io"));
        assert_eq!(i.digest(), Some(SHA));
        assert_eq!(i.effective_tag(), None);

        let i = ImageRef::parse(&format!("app:1@{SHA}")).unwrap();
        assert_eq!((i.tag(), i.digest()), (Some("1"), Some(SHA)));

        // A first component without '.' or ':' is a path, not a registry.
        let i = ImageRef::parse("library/nginx:1.25").unwrap();
        assert_eq!((i.registry(), i.repository()), (None, "library/nginx"));

        ImageRef::parse("a__b/c--d/e.f_g").unwrap();
        ImageRef::parse("localhost/app").unwrap();
    }

    #[test]
    fn rejects_with_reasons() {
        let cases = [
            ("", "empty"),
            ("Nginx", "lowercase"),
            ("nginx:", "tag after ':' is empty"),
            ("nginx:-x", "must start"),
            ("nginx:a b", "contains ' '"),
            ("a..b", "invalid separator"),
            ("a___b", "invalid separator"),
            ("-a", "must start and end"),
            ("a/", "empty path component"),
            ("registry.io:99999/a", "port"),
            ("reg_istry.io/a", "host"),
            ("app@sha256:abc", "64 lowercase hex"),
            ("app@md5", "algorithm:hex"),
            ("app@sha256:zz", "hexadecimal"),
        ];
        for (input, needle) in cases {
            let e = ImageRef::parse(input).unwrap_err();
            assert!(
                e.to_string().contains(needle),
                "{input:?}: {e} does not mention {needle:?}"
            );
        }
        let long_tag = format!("a:{}", "t".repeat(129));
        ImageRef::parse(&long_tag).unwrap_err();
    }

    proptest! {
        /// Whatever parses displays back to the same text and re-parses to the same value.
        #[test]
        fn round_trip(
            reg in proptest::option::of("[a-z]{1,8}\\.[a-z]{2,3}(:[0-9]{2,4})?"),
            // A first component with '.' would be read as a registry (as Docker does).
            path in "[a-z0-9]{1,6}((_|__|-+)[a-z0-9]{1,6}){0,2}(/[a-z0-9]{1,6}((\\.|_|__|-+)[a-z0-9]{1,4})?){0,2}",
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        ) {
            let mut s = String::new();
            if let Some(r) = &reg { s.push_str(r); s.push('/'); }
            s.push_str(&path);
            if let Some(t) = &tag { s.push(':'); s.push_str(t); }
            let parsed = ImageRef::parse(&s).unwrap();
            prop_assert_eq!(parsed.to_string(), s.clone());
            prop_assert_eq!(ImageRef::parse(&parsed.to_string()).unwrap(), parsed);
        }

        /// Arbitrary input never panics, and anything accepted round-trips.
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            if let Ok(i) = ImageRef::parse(&s) {
                prop_assert_eq!(i.to_string(), s);
            }
        }
    }
}
