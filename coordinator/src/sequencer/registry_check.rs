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
    /// After a key rotation (or once a key file is configured), seals again under the
    /// current key every registry password still sealed under another (or stored plain),
    /// one proposal per host. Cheap when there is nothing to do: one read.
    pub(super) async fn reseal_registries(&self) {
        let current = self.secrets.ring().map(|r| r.current().to_string());
        let stale = self
            .node
            .read(|a| a.state.registries.stale(current.as_deref()));
        for host in stale {
            let Some((host, _, stored)) = self
                .node
                .read(|a| a.state.registries.for_host(host.as_str()))
            else {
                continue;
            };
            let context = seal_context(&host);
            let resealed = self
                .secrets
                .open(&context, &stored)
                .and_then(|plain| self.secrets.seal(&context, &plain));
            match resealed {
                Ok(password) => {
                    let cmd = crate::state::registries::RegistryCommand::Reseal {
                        host: host.clone(),
                        password,
                    };
                    if let Err(e) = self.propose(crate::state::Command::Registry { cmd }).await {
                        tracing::debug!(registry = %host, error = %e, "re-seal not proposed");
                        return;
                    }
                    tracing::info!(registry = %host, "registry login sealed under the current key");
                }
                // Retried on every pass; the image check names the cause to whoever deploys.
                Err(e) => {
                    tracing::debug!(registry = %host, error = %e, "cannot re-seal a registry login");
                }
            }
        }
    }

    /// After a key rotation, seals again under the current key the secret environment
    /// values of every stored deployment still sealed under another: one proposal per
    /// deployment, once per current key per leadership (a scan of every deployment, so not
    /// on every applied entry).
    pub(super) async fn reseal_env(&self) {
        let Some(current) = self.secrets.ring().map(|r| r.current().to_string()) else {
            return;
        };
        if self.resealed_env_under.lock().expect("poisoned").as_deref() == Some(&current) {
            return;
        }
        let stale: Vec<(uuid::Uuid, sluice_common::api::CreateDeploymentRequest)> =
            self.node.read(|a| {
                let records = &a.state.deployments.all;
                records
                    .metas()
                    .filter(|(_, m)| m.secret_env)
                    .filter_map(|(id, _)| records.get(&id))
                    .filter(|d| crate::secrets::env::stale(&d.request.env, &current))
                    .map(|d| (d.id, d.request.clone()))
                    .collect()
            });
        for (id, request) in stale {
            let env = match crate::secrets::env::reseal(
                &self.secrets,
                &request.service,
                &request.env,
            ) {
                Ok(env) => env,
                Err(e) => {
                    tracing::debug!(deployment = %id, error = %e, "cannot re-seal an environment");
                    continue;
                }
            };
            let cmd = crate::state::deployments::DeploymentCommand::ResealEnv { id, env };
            if let Err(e) = self
                .propose(crate::state::Command::Deployment { cmd })
                .await
            {
                tracing::debug!(deployment = %id, error = %e, "re-seal not proposed");
                return;
            }
        }
        *self.resealed_env_under.lock().expect("poisoned") = Some(current);
    }

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
