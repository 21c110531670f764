//! Key files: `ID HEX64` per line (the last line current), mode 0600 or stricter.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::Keyring;

/// Reads a key file; refuses one readable by group or others.
pub fn read(path: &Path) -> Result<Keyring, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: readable by group or others (mode {mode:o}); run chmod 600 on it",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses a key file's text.
pub fn parse(text: &str) -> Result<Keyring, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            format!(
                "line {}: expected `ID HEX64` (a key id and 32 bytes in hex)",
                n + 1
            )
        };
        let (id, hex) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let hex = hex.trim();
        let ok_id = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok_id || hex.len() != 64 {
            return Err(bad());
        }
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        if keys.iter().any(|(k, _)| k == id) {
            return Err(format!("line {}: key id {id} appears twice", n + 1));
        }
        keys.push((id.to_string(), key));
    }
    Keyring::new(keys).ok_or_else(|| "holds no key".to_string())
}

/// Appends a fresh random key (id `k<N+1>`) to `path`, creating it (mode 0600) if missing;
/// returns the new key's id. New values are sealed with it; old ones still open.
pub fn rotate(path: &Path) -> Result<String, String> {
    let existing = if path.exists() {
        Some(read(path)?)
    } else {
        None
    };
    let n = existing.as_ref().map_or(0, |k| k.keys.len());
    let mut id = format!("k{}", n + 1);
    let mut bump = n + 1;
    while existing.as_ref().is_some_and(|k| k.keys.contains_key(&id)) {
        bump += 1;
        id = format!("k{bump}");
    }
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| "no randomness available".to_string())?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{id} {hex}").map_err(|e| format!("{}: {e}", path.display()))?;
    f.sync_all()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(id)
}

/// The configured key file's keyring; `None` without one (secrets stored plain).
pub fn load(configured: Option<&Path>) -> Result<Option<Keyring>, String> {
    match configured {
        Some(p) => read(p).map(Some),
        None => {
            tracing::warn!("no [secrets] key_file: registry passwords and secret env values are stored in clear in the Raft log (sluice keys rotate --key-file PATH makes one)");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_parse_rotate_and_refuse_loose_modes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        assert_eq!(rotate(&p).unwrap(), "k1");
        assert_eq!(rotate(&p).unwrap(), "k2");
        let ring = read(&p).unwrap();
        assert_eq!(ring.current(), "k2");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read(&p).unwrap_err().contains("chmod 600"));
        assert!(parse("k1 abc").unwrap_err().contains("line 1"));
        assert!(parse("# nothing\n").unwrap_err().contains("no key"));
        let dup = format!("a {0}\na {0}\n", "00".repeat(32));
        assert!(parse(&dup).unwrap_err().contains("twice"));
        assert!(load(None).unwrap().is_none());
    }
}
