//! The `image_in_registry` check: an image that names a registry must be there, and its
//! tag is resolved to a digest once, here, for every server to pull. Reported against the
//! first target server (the check is the cluster's, not a server's).

use sluice_common::api::{CheckResult, RegistryCredentials, RegistryPassword};
use sluice_common::image::ImageRef;

use super::validate::timed;
use super::Driver;
use crate::state::deployments::Deployment;
use crate::state::registries::seal_context;

impl Driver {
    /// The stored login for `image`'s registry, opened, if it names one and a login is
    /// stored; an error when this node cannot open it (another cluster key).
    pub(super) fn registry_login(
        &self,
        image: &ImageRef,
    ) -> Result<Option<RegistryCredentials>, String> {
        let Some(host) = image.registry() else {
            return Ok(None);
        };
        let Some((host, username, sealed)) = self.node.read(|a| a.state.registries.for_host(host))
        else {
            return Ok(None);
        };
        let plain = self
            .secrets
            .open(&seal_context(&host), &sealed)
            .map_err(|e| format!("the stored login for registry {host} cannot be opened: {e}"))?;
        let password = RegistryPassword::parse(&plain).map_err(|e| e.to_string())?;
        Ok(Some(RegistryCredentials { username, password }))
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
            let login = login?;
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
