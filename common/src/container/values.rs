//! The container spec's validated values, each parsed once by serde (`try_from = "String"`)
//! so a bad one is a 400 naming its field. Every rule here is restated as a pattern in
//! `openapi/container.rs`; change both together.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::InvalidValue;

/// `impl`s of a validated string newtype whose rule is `$check`.
macro_rules! text_value {
    ($(#[$meta:meta])* $name:ident, $what:literal, $check:path) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates.
            pub fn parse(s: &str) -> Result<Self, InvalidValue> {
                $check(s).map_err(|r| InvalidValue::new($what, s, r))?;
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
    };
}

type Rule = Result<(), String>;

fn chars_in(s: &str, ok: impl Fn(char) -> bool, allowed: &str) -> Rule {
    match s.chars().find(|c| !ok(*c)) {
        Some(c) => Err(format!("contains {c:?}; only {allowed} are allowed")),
        None => Ok(()),
    }
}

fn length(s: &str, min: usize, max: usize) -> Rule {
    if s.len() < min || s.len() > max {
        return Err(format!("must be {min} to {max} characters long"));
    }
    Ok(())
}

/// An absolute path inside the container (or on the host): `/`, then anything but control
/// characters and `:` (Docker's separator), at most 4096 bytes.
pub(crate) fn abs_path(s: &str) -> Rule {
    length(s, 1, 4096)?;
    if !s.starts_with('/') {
        return Err("must be an absolute path (start with '/')".into());
    }
    if s.chars().any(|c| c.is_control() || c == ':') {
        return Err("must not contain ':' or control characters".into());
    }
    Ok(())
}

/// A Docker object name (volume, network, log driver option key): a letter or digit, then
/// letters, digits, `_`, `.`, `-`.
fn docker_name(s: &str, max: usize) -> Rule {
    length(s, 1, max)?;
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit".into());
    }
    chars_in(
        s,
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
        "letters, digits, '_', '.' and '-'",
    )
}

fn user(s: &str) -> Rule {
    let mut parts = s.split(':');
    let (u, g) = (parts.next().unwrap_or(""), parts.next());
    if parts.next().is_some() {
        return Err("must be user or user:group".into());
    }
    for p in std::iter::once(u).chain(g) {
        length(p, 1, 32).map_err(|_| "user and group must each be 1 to 32 characters")?;
        if p.starts_with(['.', '-']) {
            return Err("user and group must not start with '.' or '-'".into());
        }
        chars_in(
            p,
            |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
            "letters, digits, '_', '.' and '-'",
        )?;
    }
    Ok(())
}

text_value!(
    /// An absolute path inside the container, e.g. the working directory.
    ContainerPath,
    "container path",
    abs_path
);

text_value!(
    /// The user (and group) the process runs as: a name or id, `user[:group]`.
    UserSpec,
    "user",
    user
);

fn volume(s: &str) -> Rule {
    let parts: Vec<&str> = s.split(':').collect();
    if !matches!(parts.len(), 2 | 3) {
        return Err("must be source:/target or source:/target:ro|rw".into());
    }
    if parts[0].starts_with('/') {
        abs_path(parts[0]).map_err(|e| format!("host path {e}"))?;
    } else {
        docker_name(parts[0], 255).map_err(|e| {
            format!("source is neither an absolute host path nor a volume name: it {e}")
        })?;
    }
    abs_path(parts[1]).map_err(|e| format!("target {e}"))?;
    match parts.get(2) {
        None | Some(&"ro") | Some(&"rw") => Ok(()),
        Some(o) => Err(format!("mode {o:?} is neither ro nor rw")),
    }
}

text_value!(
    /// A mount, Docker `-v` syntax: `source:/target[:ro|rw]`. A source starting with `/` is
    /// a host path (allowed only where the server's policy allows host mounts); otherwise it
    /// is a named volume (always allowed; Docker creates it on first use).
    VolumeMount,
    "volume",
    volume
);

impl VolumeMount {
    /// Whether the source is a host path.
    pub fn is_host_path(&self) -> bool {
        self.0.starts_with('/')
    }

    /// The path inside the container.
    pub fn target(&self) -> &str {
        self.0.split(':').nth(1).unwrap_or("")
    }
}

fn capability(s: &str) -> Rule {
    length(s, 1, 64)?;
    if !s.starts_with(|c: char| c.is_ascii_uppercase()) {
        return Err("must start with an upper-case letter".into());
    }
    chars_in(
        s,
        |c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_',
        "upper-case letters, digits and '_'",
    )
}

text_value!(
    /// A Linux capability to add, as Docker names them (`NET_ADMIN`, `SYS_PTRACE`).
    Capability,
    "capability",
    capability
);

fn tmpfs(s: &str) -> Rule {
    let (path, opts) = match s.split_once(':') {
        Some((p, o)) => (p, Some(o)),
        None => (s, None),
    };
    abs_path(path)?;
    if let Some(o) = opts {
        length(o, 1, 256).map_err(|_| "options must be 1 to 256 characters")?;
        chars_in(
            o,
            |c| c.is_ascii_alphanumeric() || matches!(c, '=' | ',' | '_' | '.' | '-'),
            "letters, digits, '=', ',', '_', '.' and '-' in options",
        )?;
    }
    Ok(())
}

text_value!(
    /// A tmpfs mount: `/path[:options]`, options as for `mount -t tmpfs` (`size=64m,mode=1777`).
    TmpfsMount,
    "tmpfs",
    tmpfs
);

impl TmpfsMount {
    /// The path and its options (empty when none).
    pub fn split(&self) -> (&str, &str) {
        self.0.split_once(':').unwrap_or((&self.0, ""))
    }
}

/// Bytes of a size written `<n>[b|k|m|g]` (binary units, as Docker reads them); at most
/// 15 digits without a unit or with `b`, 12 with `k`, 9 with `m`, 6 with `g` (so none
/// overflows).
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let (per, max_digits) = match unit {
        "" | "b" | "B" => (1, 15),
        "k" | "K" => (1 << 10, 12),
        "m" | "M" => (1 << 20, 9),
        "g" | "G" => (1 << 30, 6),
        _ => return Err(format!("unknown unit {unit:?}; use b, k, m or g")),
    };
    if digits.is_empty() || digits.len() > max_digits {
        return Err(format!(
            "must be 1 to {max_digits} digits before the unit {unit:?}"
        ));
    }
    let n: u64 = digits.parse().map_err(|_| "bad number".to_string())?;
    Ok(n * per)
}

text_value!(
    /// A size in bytes written `<n>[b|k|m|g]` (binary units: `512m` is 512 MiB).
    ByteSize,
    "size",
    check_bytes
);

fn check_bytes(s: &str) -> Rule {
    parse_bytes(s).map(|_| ())
}

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(&self) -> u64 {
        parse_bytes(&self.0).expect("validated")
    }
}

fn restart(s: &str) -> Rule {
    match s {
        "no" | "always" | "unless-stopped" | "on-failure" => Ok(()),
        _ => match s.strip_prefix("on-failure:") {
            Some(n) if n.len() <= 3 && !n.starts_with('0') && n.parse::<u16>().is_ok() => Ok(()),
            _ => Err(
                "must be no, always, unless-stopped, on-failure or on-failure:N (N 1-999)".into(),
            ),
        },
    }
}

text_value!(
    /// Docker's restart policy: `no`, `always`, `unless-stopped` (the default) or
    /// `on-failure[:N]` (N 1-999 retries).
    RestartPolicy,
    "restart policy",
    restart
);

impl RestartPolicy {
    /// The policy's name and its retry count.
    pub fn split(&self) -> (&str, Option<u16>) {
        match self.0.split_once(':') {
            Some((n, c)) => (n, c.parse().ok()),
            None => (&self.0, None),
        }
    }
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self("unless-stopped".into())
    }
}

/// Network names that are modes, not networks: `network_mode` says those.
pub const RESERVED_NETWORKS: [&str; 4] = ["bridge", "host", "none", "default"];

fn network(s: &str) -> Rule {
    docker_name(s, 64)?;
    if RESERVED_NETWORKS.contains(&s) {
        return Err(format!(
            "{s} is a network mode, not a network to join (see network_mode)"
        ));
    }
    Ok(())
}

text_value!(
    /// A Docker network the container joins (created on the server if missing).
    NetworkName,
    "network name",
    network
);

fn alias(s: &str) -> Rule {
    length(s, 1, 63)?;
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must not start or end with '-'".into());
    }
    chars_in(
        s,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        "a-z, 0-9 and '-'",
    )
}

text_value!(
    /// A DNS alias of the container on a network (an RFC 1123 label).
    NetworkAlias,
    "network alias",
    alias
);

/// The label prefix Sluice keeps for its own labels.
pub const RESERVED_LABEL_PREFIX: &str = "sluice.";

fn label_key(s: &str) -> Rule {
    length(s, 1, 128)?;
    if s.to_ascii_lowercase().starts_with(RESERVED_LABEL_PREFIX) {
        return Err("the sluice.* namespace is reserved for Sluice's own labels".into());
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit".into());
    }
    chars_in(
        s,
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'),
        "letters, digits, '_', '.', '-' and '/'",
    )
}

text_value!(
    /// A container label key (`com.example.team`); `sluice.*` is reserved.
    LabelKey,
    "label key",
    label_key
);

fn signal(s: &str) -> Rule {
    if let Ok(n) = s.parse::<u8>() {
        return if (1..=64).contains(&n) && !s.starts_with('0') {
            Ok(())
        } else {
            Err("a signal number must be 1 to 64".into())
        };
    }
    let name = s
        .strip_prefix("SIG")
        .ok_or("must be a signal name like SIGTERM or a number 1-64")?;
    let (base, plus) = match name.split_once('+') {
        Some((b, p)) => (b, Some(p)),
        None => (name, None),
    };
    length(base, 2, 8).map_err(|_| "must be a signal name like SIGTERM or a number 1-64")?;
    chars_in(
        base,
        |c| c.is_ascii_uppercase() || c.is_ascii_digit(),
        "A-Z and 0-9 after SIG",
    )?;
    if let Some(p) = plus {
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err("SIGRTMIN+N takes a number of 1-2 digits".into());
        }
    }
    Ok(())
}

text_value!(
    /// The signal that asks the process to stop (`SIGTERM`, `SIGQUIT`, `SIGRTMIN+3`, `15`).
    StopSignal,
    "stop signal",
    signal
);

fn log_name(s: &str) -> Rule {
    docker_name(s, 64)
}

text_value!(
    /// A log driver (`json-file`, `local`, `journald`, `syslog`, `none`, ...).
    LogDriver,
    "log driver",
    log_name
);

text_value!(
    /// A log driver option's key (`max-size`, `tag`).
    LogOptionKey,
    "log option",
    log_name
);

/// CPUs as a number (`0.5`, `2`), kept in thousandths; 0.001 to 1024.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpus(u32);

impl Cpus {
    /// Thousandths of a CPU.
    pub fn millis(self) -> u32 {
        self.0
    }

    /// From a number of CPUs.
    pub fn from_f64(v: f64) -> Result<Self, InvalidValue> {
        let m = (v * 1000.0).round();
        if !v.is_finite() || !(1.0..=1_024_000.0).contains(&m) || (m - v * 1000.0).abs() > 1e-6 {
            return Err(InvalidValue::new(
                "cpus",
                &v.to_string(),
                "must be 0.001 to 1024, in steps of 0.001",
            ));
        }
        Ok(Self(m as u32))
    }
}

impl Serialize for Cpus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(self.0) / 1000.0)
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Self::from_f64(v).map_err(serde::de::Error::custom)
    }
}
