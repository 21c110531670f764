//! A project CA for tests: certificates for every process the harness starts, and HTTPS
//! clients that trust only that CA.
//!
//! [`Pki::shared`] is one CA per test process, so coordinators and agents started by
//! different helpers trust each other without passing anything around; a test that needs
//! a stranger (a certificate from another CA) makes its own [`Pki::new`]. Every leaf gets
//! SANs `127.0.0.1` and `localhost`, since the harness dials loopback.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use sluice_common::tls::{self, CertifiedKeyPem, Role, TlsFiles};

/// A test CA.
#[derive(Debug)]
pub struct Pki {
    ca: CertifiedKeyPem,
    dir: PathBuf,
}

/// The SANs every test certificate carries.
fn loopback_sans() -> Vec<String> {
    vec!["127.0.0.1".into(), "localhost".into()]
}

impl Pki {
    /// A fresh CA; its files live in a temporary directory kept until the process exits.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sluice-test-pki-")
            .tempdir()
            .expect("tempdir")
            .keep();
        Self {
            ca: tls::ca_init().expect("test CA"),
            dir,
        }
    }

    /// The CA every harness process of this test binary shares.
    pub fn shared() -> &'static Pki {
        static SHARED: OnceLock<Pki> = OnceLock::new();
        SHARED.get_or_init(Pki::new)
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// A certificate for `role`/`name`, valid for a day from five minutes ago.
    pub fn issue(&self, role: Role, name: &str) -> CertifiedKeyPem {
        self.issue_with_sans(role, name, &[])
    }

    /// Like [`Pki::issue`], with `extra` SANs besides loopback (a process that listens on
    /// another address, e.g. inside a network namespace).
    pub fn issue_with_sans(&self, role: Role, name: &str, extra: &[String]) -> CertifiedKeyPem {
        let mut sans = loopback_sans();
        sans.extend(extra.iter().cloned());
        tls::issue(&self.ca.cert_pem, &self.ca.key_pem, role, name, &sans, 1)
            .expect("issue a test certificate")
    }

    /// A certificate that expired an hour ago.
    pub fn issue_expired(&self, role: Role, name: &str) -> CertifiedKeyPem {
        tls::issue_at(
            &self.ca.cert_pem,
            &self.ca.key_pem,
            role,
            name,
            &loopback_sans(),
            SystemTime::now() - Duration::from_secs(2 * 86_400),
            1,
        )
        .expect("issue an expired test certificate")
    }

    /// Issues `role`/`name` and writes `dir/ca.pem`, `dir/NAME.pem`, `dir/NAME.key` (0600).
    pub fn write(&self, dir: &Path, role: Role, name: &str) -> TlsFiles {
        self.write_with_sans(dir, role, name, &[])
    }

    /// [`Pki::write`] with `extra` SANs (see [`Pki::issue_with_sans`]).
    pub fn write_with_sans(
        &self,
        dir: &Path,
        role: Role,
        name: &str,
        extra: &[String],
    ) -> TlsFiles {
        write_files(
            dir,
            name,
            self.ca_pem(),
            &self.issue_with_sans(role, name, extra),
        )
    }

    /// An HTTPS client builder trusting this CA (any server role), presenting `identity`'s
    /// certificate if given.
    pub fn client(&self, identity: Option<&CertifiedKeyPem>) -> reqwest::ClientBuilder {
        tls::https_client(
            self.ca_pem(),
            identity.map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())),
            &[],
        )
        .expect("test client")
        .no_proxy()
    }

    /// A client presenting a fresh certificate for `role`/`name`.
    pub fn client_as(&self, role: Role, name: &str) -> reqwest::Client {
        self.client(Some(&self.issue(role, name)))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("test client")
    }

    /// Writes the CA's certificate and key (mode 0600) into `dir` as `ca.pem` and
    /// `ca.key`, for a process that issues its own certificates from it (the simulated
    /// agents), and returns their paths.
    pub fn write_ca(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let files = write_files(dir, "ca", &self.ca.cert_pem, &self.ca);
        (files.ca, files.key)
    }

    /// Where this CA keeps scratch files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes a CA bundle, certificate and key (mode 0600) the way `sluice ca issue` lays them
/// out, and returns their paths. Overwrites: tests rotate certificates with it.
pub fn write_files(dir: &Path, name: &str, ca_pem: &str, cert: &CertifiedKeyPem) -> TlsFiles {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("tls dir");
    let files = TlsFiles::in_dir(dir, name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true).mode(0o600);
    use std::io::Write;
    opts.open(&files.key)
        .and_then(|mut f| f.write_all(cert.key_pem.as_bytes()))
        .expect("write key");
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&files.cert, &cert.cert_pem).expect("write cert");
    std::fs::write(&files.ca, ca_pem).expect("write ca");
    files
}

/// The `[tls]` table of a config naming `files`.
pub fn tls_toml(files: &TlsFiles) -> String {
    format!(
        "\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
        files.ca, files.cert, files.key
    )
}
