//! Certificates on disk and a server configuration that follows them.
//!
//! Rotation never needs a restart: [`ServerTls`] holds the current `Arc<ServerConfig>` and
//! [`ServerTls::reload`] builds a complete new one from the files (server certificate, key
//! and CA together, so a new CA takes effect for client verification as well) and swaps it
//! in. The accept loop takes the current configuration per connection, so established
//! connections keep their session and new ones see the new certificate. A reload that fails
//! (a half-written file, a key that does not match) keeps the old configuration.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;

use super::config::{self, certs_from_pem, ClientAuth};
use super::identity::{cert_not_after, PeerIdentity, Role};
use super::TlsError;

/// Where a node's CA certificate, certificate and key live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The project CA certificate (PEM); may hold several during a CA rotation.
    pub ca: PathBuf,
    /// This node's certificate (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// Size and modification time of each file: what "the files changed" means.
type Stamp = Vec<Option<(SystemTime, u64)>>;

impl TlsFiles {
    /// The layout `sluice ca issue` writes: `dir/ca.pem`, `dir/NAME.pem`, `dir/NAME.key`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// Reads and checks all three files. Refuses a key readable by group or others.
    pub fn read(&self) -> Result<TlsMaterial, TlsError> {
        check_key_mode(&self.key)?;
        let ca = read(&self.ca)?;
        let cert = read(&self.cert)?;
        let key = read(&self.key)?;
        TlsMaterial::from_pem(ca, cert, key)
    }

    fn stamp(&self) -> Stamp {
        [&self.ca, &self.cert, &self.key]
            .iter()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((m.modified().ok()?, m.len()))
            })
            .collect()
    }
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(unix)]
fn check_key_mode(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| TlsError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyFileMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_mode(_: &Path) -> Result<(), TlsError> {
    Ok(())
}

/// A CA bundle, certificate and key that belong together, with the certificate's identity
/// and expiry already read. `Debug` never prints the key.
#[derive(Clone)]
pub struct TlsMaterial {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    identity: PeerIdentity,
    not_after: SystemTime,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("identity", &self.identity)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Checks that the certificate carries an identity and that the key belongs to it.
    pub fn from_pem(ca_pem: String, cert_pem: String, key_pem: String) -> Result<Self, TlsError> {
        let leaf = certs_from_pem("certificate", &cert_pem)?;
        let identity = PeerIdentity::from_der(&leaf[0])?;
        let not_after = cert_not_after(&leaf[0])?;
        // Building a server config checks the CA bundle, and the key against the certificate.
        config::server_config(&ca_pem, &cert_pem, &key_pem, ClientAuth::Required)?;
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem,
            identity,
            not_after,
        })
    }

    /// Who this certificate says we are.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// When this certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The CA bundle (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A server configuration presenting this certificate.
    pub fn server_config(&self, auth: ClientAuth) -> Result<ServerConfig, TlsError> {
        config::server_config(&self.ca_pem, &self.cert_pem, &self.key_pem, auth)
    }

    /// A client configuration presenting this certificate; see [`config::client_config`].
    pub fn client_config(&self, server_roles: &[Role]) -> Result<rustls::ClientConfig, TlsError> {
        config::client_config(
            &self.ca_pem,
            Some((&self.cert_pem, &self.key_pem)),
            server_roles,
        )
    }

    /// An HTTPS client presenting this certificate; see [`super::client::https_client`].
    #[cfg(feature = "serve")]
    pub fn https_client(&self, server_roles: &[Role]) -> Result<reqwest::ClientBuilder, TlsError> {
        super::client::https_client(
            &self.ca_pem,
            Some((&self.cert_pem, &self.key_pem)),
            server_roles,
        )
    }
}

/// The live server configuration of one listener, reloadable from its files. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    inner: Arc<Inner>,
}

struct Inner {
    files: Option<TlsFiles>,
    auth: ClientAuth,
    config: RwLock<Arc<ServerConfig>>,
    state: Mutex<State>,
}

struct State {
    stamp: Stamp,
    identity: PeerIdentity,
    not_after: SystemTime,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("ServerTls")
            .field("files", &self.inner.files)
            .field("auth", &self.inner.auth)
            .field("identity", &state.identity)
            .field("not_after", &state.not_after)
            .finish()
    }
}

impl ServerTls {
    /// Reads the files and builds the first configuration.
    pub fn from_files(files: TlsFiles, auth: ClientAuth) -> Result<Self, TlsError> {
        let stamp = files.stamp();
        let material = files.read()?;
        Self::build(Some(files), stamp, &material, auth)
    }

    /// A configuration that never changes (`sluice dev`, tests): `reload` is a no-op.
    pub fn fixed(material: &TlsMaterial, auth: ClientAuth) -> Result<Self, TlsError> {
        Self::build(None, Vec::new(), material, auth)
    }

    fn build(
        files: Option<TlsFiles>,
        stamp: Stamp,
        material: &TlsMaterial,
        auth: ClientAuth,
    ) -> Result<Self, TlsError> {
        let config = Arc::new(material.server_config(auth)?);
        Ok(Self {
            inner: Arc::new(Inner {
                files,
                auth,
                config: RwLock::new(config),
                state: Mutex::new(State {
                    stamp,
                    identity: material.identity.clone(),
                    not_after: material.not_after,
                }),
            }),
        })
    }

    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.inner
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the files and swaps in a new configuration. On error the old one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some(files) = &self.inner.files else {
            return Ok(());
        };
        let stamp = files.stamp();
        let material = files.read()?;
        let config = Arc::new(material.server_config(self.inner.auth)?);
        *self.inner.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.stamp = stamp;
        state.identity = material.identity.clone();
        state.not_after = material.not_after;
        tracing::info!(
            identity = %material.identity,
            cert = %files.cert.display(),
            "TLS certificate reloaded"
        );
        Ok(())
    }

    /// Reloads if any file's size or modification time changed since the last successful
    /// load. Returns whether it reloaded.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let Some(files) = &self.inner.files else {
            return Ok(false);
        };
        let unchanged = {
            let state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            state.stamp == files.stamp()
        };
        if unchanged {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }

    /// The current certificate's expiry, for the `tls_cert_not_after_seconds` metric.
    pub fn not_after(&self) -> SystemTime {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .not_after
    }

    /// Who the current certificate says this server is.
    pub fn identity(&self) -> PeerIdentity {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .identity
            .clone()
    }
}
