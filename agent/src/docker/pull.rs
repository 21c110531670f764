//! Pulling with a registry login, and saying why a pull failed.
//!
//! bollard 0.21 encodes `X-Registry-Auth` with standard base64 while Docker 20.10 decodes it
//! as base64url: a login whose JSON encodes to `+` or `/` (user `acc2`, password `??>>~~`)
//! is silently dropped and the pull fails with "no basic auth credentials". So the pull goes
//! through bollard with `credentials: None`, and the header, encoded URL-safe here, is set
//! on that one request by a request modifier on a clone of the client.

use sluice_common::api::RegistryCredentials;

/// URL-safe base64 with padding (RFC 4648 §5), what Docker's `DecodeAuthConfig` reads.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `X-Registry-Auth` value for `auth` at `server` (the registry host).
pub(super) fn registry_auth_header(server: &str, auth: &RegistryCredentials) -> String {
    let json = serde_json::json!({
        "username": auth.username.as_str(),
        "password": auth.password.expose(),
        "serveraddress": server,
    });
    base64url(json.to_string().as_bytes())
}

/// Why a pull failed, from the daemon's message: the cause first (authentication, not
/// found, unreachable, disk full), then what Docker said.
pub fn explain_pull_failure(message: &str) -> String {
    let m = message.to_ascii_lowercase();
    let cause = if ["no space left on device", "disk quota exceeded"]
        .iter()
        .any(|s| m.contains(s))
    {
        "disk full"
    } else if [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied",
        "incorrect username or password",
    ]
    .iter()
    .any(|s| m.contains(s))
    {
        "registry authentication failed"
    } else if ["manifest unknown", "not found", "name unknown"]
        .iter()
        .any(|s| m.contains(s))
    {
        "image not found in its registry"
    } else if [
        "connection refused",
        "no such host",
        "i/o timeout",
        "timeout",
        "network is unreachable",
        "connection reset",
        "eof",
    ]
    .iter()
    .any(|s| m.contains(s))
    {
        "registry unreachable"
    } else {
        "pull failed"
    };
    format!("{cause}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::api::{RegistryPassword, RegistryUsername};

    #[test]
    fn the_header_is_url_safe_where_standard_base64_is_not() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg==");
        assert_eq!(base64url(b"fo"), "Zm8=");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8=");
        let auth = RegistryCredentials {
            username: RegistryUsername::parse("acc2").unwrap(),
            password: RegistryPassword::parse("??>>~~").unwrap(),
        };
        let h = registry_auth_header("127.0.0.1:5000", &auth);
        assert!(!h.contains('+') && !h.contains('/'), "{h}");
        // The same JSON in standard base64 holds `+` or `/` (the case bollard gets wrong).
        assert!(h.contains('-') || h.contains('_'), "{h}");
    }

    #[test]
    fn failures_name_their_cause() {
        let cases = [
            (
                "Get https://r/v2/a/manifests/x: no basic auth credentials",
                "registry authentication failed",
            ),
            (
                "unauthorized: authentication required",
                "registry authentication failed",
            ),
            (
                "manifest for r/a:x not found: manifest unknown",
                "image not found in its registry",
            ),
            (
                "Get https://127.0.0.1:1/v2/: dial tcp 127.0.0.1:1: connect: connection refused",
                "registry unreachable",
            ),
            (
                "write /var/lib/docker/tmp/x: no space left on device",
                "disk full",
            ),
            ("something else", "pull failed"),
        ];
        for (msg, cause) in cases {
            let e = explain_pull_failure(msg);
            assert!(e.starts_with(cause) && e.ends_with(msg), "{e}");
        }
    }
}
