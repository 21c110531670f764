//! Pinning a deployment's image to the digest validation resolved: what every server
//! pulls, so a tag re-pushed between two servers' pulls cannot split the fleet.

use sluice_common::image::ImageRef;
use sluice_common::time::Timestamp;
use uuid::Uuid;

use super::{DeploymentError, DeploymentOutcome, Deployments};

/// `image` pinned to `digest`: `[registry/]repository@digest`, the tag dropped (Docker
/// pulls by digest alone). Without a digest, the image as it is.
pub(super) fn pinned(image: &ImageRef, digest: Option<&str>) -> ImageRef {
    match digest {
        Some(d) => {
            ImageRef::parse(&format!("{}@{d}", image.name())).unwrap_or_else(|_| image.clone())
        }
        None => image.clone(),
    }
}

impl Deployments {
    pub(super) fn pin_image(
        &mut self,
        id: Uuid,
        digest: &str,
        now: Timestamp,
    ) -> Result<DeploymentOutcome, DeploymentError> {
        let d = self.get_mut(id)?;
        if d.image_digest.as_deref() == Some(digest) {
            return Ok(DeploymentOutcome { id, created: false });
        }
        if d.touched() {
            return Err(DeploymentError::Conflict {
                message: format!(
                    "deployment {id} already reached a server with {}; its image cannot be re-pinned",
                    d.pinned_image()
                ),
            });
        }
        let valid = digest.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if !valid {
            return Err(DeploymentError::Conflict {
                message: format!("{digest:?} is not a sha256 digest"),
            });
        }
        d.image_digest = Some(digest.to_string());
        d.updated_at = now;
        Ok(DeploymentOutcome { id, created: false })
    }
}

impl Deployments {
    /// Replaces `id`'s environment with the same one sealed anew (key rotation): the names
    /// and secret flags must be those stored, so nothing but the sealing changes.
    pub(super) fn reseal_env(
        &mut self,
        id: Uuid,
        env: &std::collections::BTreeMap<sluice_common::names::EnvName, sluice_common::api::EnvVar>,
    ) -> Result<DeploymentOutcome, DeploymentError> {
        let d = self.get_mut(id)?;
        fn shape(
            e: &std::collections::BTreeMap<
                sluice_common::names::EnvName,
                sluice_common::api::EnvVar,
            >,
        ) -> Vec<(&sluice_common::names::EnvName, bool)> {
            e.iter().map(|(k, v)| (k, v.secret)).collect()
        }
        if shape(&d.request.env) != shape(env) {
            return Err(DeploymentError::Conflict {
                message: format!(
                    "deployment {id}: a re-sealed environment must keep its names and secret flags"
                ),
            });
        }
        d.request.env = env.clone();
        Ok(DeploymentOutcome { id, created: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_drops_the_tag_and_keeps_the_registry() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let i = ImageRef::parse("127.0.0.1:5000/acc/web:v1").unwrap();
        assert_eq!(
            pinned(&i, Some(&d)).to_string(),
            format!("127.0.0.1:5000/acc/web@{d}")
        );
        assert_eq!(pinned(&i, None), i);
    }
}
