//! The pure half of talking to a registry: which URL to ask, what a `WWW-Authenticate`
//! challenge asks for, and what an answer means. No I/O; [`super::RegistryClient`] does it.

use sluice_common::image::ImageRef;

/// The manifest media types a digest may be resolved to: a multi-platform image answers
/// with its list/index, a single-platform one with its manifest. Docker pulls by either.
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json";

/// Where the registry API of `host` lives: Docker Hub's API host for `docker.io`.
pub fn api_host(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        h => h,
    }
}

/// `https://HOST/v2/NAME/manifests/REF` for `image` (the digest if it has one, else its
/// tag, `latest` by default), and the repository name (for the token scope).
pub fn manifest_url(image: &ImageRef) -> Option<(String, String)> {
    let host = api_host(image.registry()?);
    let name = if image.registry() == Some("docker.io") && !image.repository().contains('/') {
        format!("library/{}", image.repository())
    } else {
        image.repository().to_string()
    };
    let reference = image.digest().or(image.effective_tag()).unwrap_or("latest");
    Some((
        format!("https://{host}/v2/{name}/manifests/{reference}"),
        name,
    ))
}

/// What a 401 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic auth.
    Basic,
    /// A bearer token from `realm` (with `service`, and `scope` if the registry named one).
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter.
        service: Option<String>,
        /// The `scope` parameter.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value (`Bearer realm="…",service="…",scope="…"` or
/// `Basic realm="…"`); `None` for anything else.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    for (k, v) in params(rest) {
        match k.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(v),
            "service" => service = Some(v),
            "scope" => scope = Some(v),
            _ => {}
        }
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
        scope,
    })
}

/// `k="v", k2=v2` pairs; quoted values may hold commas (a scope's actions do).
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let key = k.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, remainder) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((key, value));
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// The scope to ask a token for: the registry's own, else pull on `name`.
pub fn token_scope(scope: Option<&str>, name: &str) -> String {
    scope.map_or_else(|| format!("repository:{name}:pull"), str::to_string)
}

/// Why an image could not be resolved. Each message starts with its cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// 401/403: no login stored, or the registry refused it.
    #[error("authentication failed at registry {host}: {detail}")]
    Authentication {
        /// The registry.
        host: String,
        /// What happened.
        detail: String,
    },
    /// 404: no such repository or tag (`MANIFEST_UNKNOWN`, `NAME_UNKNOWN`).
    #[error("not found: {image} is not in registry {host}")]
    NotFound {
        /// The registry.
        host: String,
        /// The reference.
        image: String,
    },
    /// No connection, TLS failure or timeout.
    #[error("registry {host} is unreachable: {detail}")]
    Unreachable {
        /// The registry.
        host: String,
        /// What happened.
        detail: String,
    },
    /// Any other answer.
    #[error("registry {host} answered {detail}")]
    Unexpected {
        /// The registry.
        host: String,
        /// What it said.
        detail: String,
    },
}

/// What a final manifest answer's status means (200 is success, handled by the caller).
pub fn classify(status: u16, host: &str, image: &str, had_credentials: bool) -> ResolveError {
    match status {
        401 | 403 => ResolveError::Authentication {
            host: host.to_string(),
            detail: if had_credentials {
                format!("the stored login was refused ({status})")
            } else {
                format!("the registry wants a login and none is stored for {host} ({status}; sluice registry login {host})")
            },
        },
        404 => ResolveError::NotFound {
            host: host.to_string(),
            image: image.to_string(),
        },
        s => ResolveError::Unexpected {
            host: host.to_string(),
            detail: format!("HTTP {s}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_tags_digests_and_docker_hub() {
        let i = ImageRef::parse("127.0.0.1:5000/acc/web:v1").unwrap();
        assert_eq!(
            manifest_url(&i).unwrap(),
            (
                "https://127.0.0.1:5000/v2/acc/web/manifests/v1".into(),
                "acc/web".into()
            )
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let i = ImageRef::parse(&format!("r.example/web:v1@{d}")).unwrap();
        assert_eq!(
            manifest_url(&i).unwrap().0,
            format!("https://r.example/v2/web/manifests/{d}")
        );
        let i = ImageRef::parse("docker.io/nginx").unwrap();
        assert_eq!(
            manifest_url(&i).unwrap().0,
            "https://registry-1.docker.io/v2/library/nginx/manifests/latest"
        );
        assert!(manifest_url(&ImageRef::parse("web:v1").unwrap()).is_none());
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(r#"Basic realm="sluice-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:acc/web:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:acc/web:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm="https://a/t""#),
            Some(Challenge::Bearer {
                realm: "https://a/t".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(token_scope(None, "acc/web"), "repository:acc/web:pull");
    }

    #[test]
    fn statuses_name_their_cause() {
        let e = classify(401, "r:1", "r:1/a:v1", true).to_string();
        assert!(e.starts_with("authentication failed"), "{e}");
        let e = classify(401, "r:1", "r:1/a:v1", false).to_string();
        assert!(e.contains("sluice registry login r:1"), "{e}");
        assert!(classify(404, "r:1", "r:1/a:v1", true)
            .to_string()
            .starts_with("not found"));
        assert!(matches!(
            classify(500, "r", "i", true),
            ResolveError::Unexpected { .. }
        ));
    }
}
