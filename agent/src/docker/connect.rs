//! Connecting to the daemon, and agreeing on an API version with it.
//!
//! bollard 0.21 speaks API 1.53 by default, which older daemons (Docker 20.10 speaks 1.41)
//! refuse with a 400 on every call. [`connect`] reads the daemon's maximum from that
//! refusal and reconnects with it.

use std::path::Path;

use bollard::errors::Error as BollardError;
use bollard::ClientVersion;

use super::from_bollard;
use crate::runtime::DockerError;

/// Connects to the daemon at `socket`, settling on an API version it accepts, and returns the
/// client and the daemon's version.
pub async fn connect(socket: &Path) -> Result<(bollard::Docker, String), DockerError> {
    let path = socket.to_string_lossy();
    let mut version = *bollard::API_DEFAULT_VERSION;
    for _ in 0..2 {
        let client = bollard::Docker::connect_with_unix(&path, 120, &version)
            .map_err(|e| DockerError::Unavailable(e.to_string()))?;
        match client.version().await {
            Ok(v) => {
                let client = client.negotiate_version().await.map_err(from_bollard)?;
                return Ok((client, v.version.unwrap_or_default()));
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 400,
                message,
            }) => match max_api_version(&message) {
                Some(v) => version = v,
                None => return Err(DockerError::Refused(message)),
            },
            Err(e) => return Err(from_bollard(e)),
        }
    }
    Err(DockerError::Refused(
        "could not agree on an API version".into(),
    ))
}

/// Parses "... Maximum supported API version is 1.41" out of a daemon's refusal.
fn max_api_version(message: &str) -> Option<ClientVersion> {
    let tail = message.split("Maximum supported API version is ").nth(1)?;
    let v: String = tail
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let (major, minor) = v.split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.trim_end_matches('.').parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_maximum_version_from_a_refusal() {
        let v = max_api_version(
            "client version 1.53 is too new. Maximum supported API version is 1.41",
        )
        .unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        assert!(max_api_version("something else").is_none());
    }
}
