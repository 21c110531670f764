//! The parts of the container spec that take more than the creation body: the named
//! networks a container joins (created when missing), and the stop grace a container was
//! created with.

use std::time::Duration;

use bollard::models::{EndpointSettings, NetworkConnectRequest, NetworkCreateRequest};

use super::{ContainerSpec, Docker, DockerError};

/// The label that marks a network Sluice created (so an operator can tell them apart).
const LABEL_NETWORK: &str = "sluice.network";

impl Docker {
    /// Joins `id` to every network of its spec, creating a missing one as a plain bridge
    /// network. Two agents racing to create the same network: the loser finds it created.
    pub(super) async fn join_networks(
        &self,
        id: &str,
        spec: &ContainerSpec,
    ) -> Result<(), DockerError> {
        for n in &spec.spec.networks {
            let name = n.name.to_string();
            let exists = match self
                .call(|c| {
                    let name = name.clone();
                    async move { c.inspect_network(&name, None).await }
                })
                .await
            {
                Ok(_) => true,
                Err(DockerError::NotFound(_)) => false,
                Err(e) => return Err(e),
            };
            if !exists {
                let req = NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some([(LABEL_NETWORK.to_string(), "true".to_string())].into()),
                    ..Default::default()
                };
                match self
                    .call(|c| async move { c.create_network(req).await })
                    .await
                {
                    // Refused: another agent on this daemon created it meanwhile (connecting
                    // says if it is anything else).
                    Ok(_) | Err(DockerError::Refused(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let req = NetworkConnectRequest {
                container: id.to_string(),
                endpoint_config: Some(EndpointSettings {
                    aliases: (!n.aliases.is_empty())
                        .then(|| n.aliases.iter().map(|a| a.to_string()).collect()),
                    ..Default::default()
                }),
            };
            let name = name.clone();
            self.call(|c| async move { c.connect_network(&name, req).await })
                .await?;
        }
        Ok(())
    }

    /// The stop grace `id` was created with (its spec's `stop_grace`), else `grace`.
    pub(super) async fn stop_grace_of(&self, id: &str, grace: Duration) -> Duration {
        let own = self
            .call(|c| async move { c.inspect_container(id, None).await })
            .await
            .ok()
            .and_then(|r| r.config)
            .and_then(|c| c.stop_timeout)
            .and_then(|t| u64::try_from(t).ok());
        own.map(Duration::from_secs).unwrap_or(grace)
    }
}
