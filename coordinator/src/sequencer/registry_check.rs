//! The `image_in_registry` check: an image that names a registry must be there, and its
//! tag is resolved to a digest once, here, for every server to pull. Reported against the
//! first target server (the check is the cluster's, not a server's).

use sluice_common::api::{CheckResult, RegistryCredentials};
use sluice_common::image::ImageRef;

use super::validate::timed;
use super::Driver;
use crate::state::deployments::Deployment;

impl Driver {
    /// The stored login for `image`'s registry, if it names one and a login is stored.
    pub(super) fn registry_login(&self, image: &ImageRef) -> Option<RegistryCredentials> {
        let host = image.registry()?;
        self.node.read(|a| a.state.registries.for_host(host))
    }
}

/// Runs the check when the image names a registry; sets `digest` when it resolves.
pub(super) async fn image_in_registry(
    driver: &Driver,
    d: &Deployment,
    digest: &mut Option<String>,
) -> Option<CheckResult> {
    let image = &d.request.image;
    let host = image.registry()?;
    let first = d.targets.first()?;
    let login = driver.registry_login(image);
    Some(
        timed("image_in_registry", first, async {
            let found = driver
                .registries
                .resolve(image, login.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            let how = if login.is_some() {
                "with the stored login"
            } else {
                "without a login"
            };
            let detail = format!("{image} is {found} in {host} ({how})");
            *digest = Some(found);
            Ok(detail)
        })
        .await,
    )
}
