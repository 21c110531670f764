//! # sluice-tests
//!
//! The cross-process test harness: it spawns the real `sluice-coordinator` and
//! `sluice-agent` binaries with generated configs in temporary directories, waits for them
//! by polling (never a fixed sleep), and kills them on drop.
//!
//! # Layout
//! - [`agent`]: real agent processes (spawn, kill -9, restart on the same data).
//! - [`agent_support`]: helpers for the agent's own tests and bench.
//! - [`cluster`]: real coordinator processes (spawn, kill -9, restart, find the leader).
//! - [`eventually`]: `assert_eventually!`-style polling with a deadline.
//! - [`netns`]: network namespaces on a bridge, real partitions (`ip netns`, iptables).
//! - [`pki`]: a test CA, certificates for every process, HTTPS clients.
//! - [`prometheus`]: a real Prometheus scraping the proxies (canary analysis).
//! - [`registry`]: a real container registry (TLS, htpasswd) for private images.
//! - [`testapp_image`]: builds the `sluice-testapp` Docker images the tests deploy.

pub mod agent;
pub mod agent_support;
pub mod apidoc;
pub mod browser;
pub mod cluster;
pub mod eventually;
pub mod fleet;
pub mod load;
pub mod netns;
pub mod openapi;
pub mod pki;
pub mod prometheus;
pub mod proxy;
pub mod registry;
pub mod testapp_image;
