//! A real container registry (Debian's `docker-registry`, distribution 2.8) for the private
//! image tests: its own storage in a temp dir, a free loopback port, TLS from the test CA
//! ([`Pki::shared`]), htpasswd (bcrypt) users; killed on drop. Missing `docker-registry` or
//! `htpasswd` (package `apache2-utils`) is a failure, never a skip.
//!
//! dockerd treats registries on 127.0.0.0/8 as insecure-allowed, so pushes and pulls work
//! without daemon changes. The registry reads its htpasswd file only at start: users are
//! fixed per [`RegistryProc::start`] (a [`RegistryProc::stop`] + [`RegistryProc::restart`]
//! keeps them, and the stored images).
//!
//! Pushes go through the `docker` CLI with a Docker config directory of this registry's own
//! (`docker --config DIR login` / `push`), so parallel tests never share a credential store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use sluice_common::tls::Role;

use crate::eventually::eventually;
use crate::pki::Pki;

/// One registry process.
#[derive(Debug)]
pub struct RegistryProc {
    /// `127.0.0.1:PORT`: the registry host as it appears in image references.
    pub host: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The binary: `$SLUICE_REGISTRY_BIN`, else `docker-registry` on the `PATH`.
fn bin() -> PathBuf {
    std::env::var_os("SLUICE_REGISTRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("docker-registry"))
}

/// The registry's configuration (distribution's YAML): filesystem storage under `dir`, TLS
/// with `dir/tls`, htpasswd auth from `dir/htpasswd`.
fn config_yaml(dir: &Path, port: u16) -> String {
    let tls = dir.join("tls");
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: sluice-test-{port}\n  tls:\n    certificate: {cert}\n    key: {key}\n\
         auth:\n  htpasswd:\n    realm: sluice-test\n    path: {htpasswd}\n",
        data = dir.join("data").display(),
        cert = tls.join("registry.pem").display(),
        key = tls.join("registry.key").display(),
        htpasswd = dir.join("htpasswd").display(),
    )
}

/// Adds `user`/`password` to the bcrypt htpasswd file `file` (the password on stdin, never
/// in an argument).
fn htpasswd_add(file: &Path, user: &str, password: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new("htpasswd");
    cmd.arg("-B").arg("-i");
    if !file.exists() {
        cmd.arg("-c");
    }
    let mut child = cmd
        .arg(file)
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start htpasswd: install Debian's apache2-utils (.ci/run does)")?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(password.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "htpasswd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Runs `docker --config DIR ARGS` with `stdin` fed in; its combined output on failure.
fn docker(config: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let mut child = Command::new("docker")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start docker")?;
    if let Some(s) = stdin {
        child.stdin.take().expect("stdin").write_all(s.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(out.status.success(), "docker {}: {text}", args.join(" "));
    Ok(text)
}

impl RegistryProc {
    /// Starts one with the given `(user, password)` accounts; returns once it answers on
    /// `/v2/` (with 401, as every request without credentials gets).
    pub async fn start(users: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sluice-test-registry-")
            .tempdir()
            .expect("registry dir");
        let port = crate::cluster::free_port();
        std::fs::write(dir.path().join("config.yml"), config_yaml(dir.path(), port))
            .expect("config");
        crate::pki::write_files(
            &dir.path().join("tls"),
            "registry",
            Pki::shared().ca_pem(),
            &Pki::shared().issue(Role::Coordinator, "registry"),
        );
        for (user, password) in users {
            htpasswd_add(&dir.path().join("htpasswd"), user, password).expect("htpasswd");
        }
        let mut r = Self {
            host: format!("127.0.0.1:{port}"),
            port,
            dir,
            child: None,
        };
        r.restart().await;
        r
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate file that verifies its TLS certificate (the shared test CA).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls").join("ca.pem")
    }

    /// Where it keeps its blobs and manifests.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `HOST/name`: a repository in this registry.
    pub fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.host)
    }

    /// (Re)starts the process on the same port, storage and users; returns when it answers.
    /// No-op while it runs.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            return;
        }
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("log"))
            .expect("log");
        let child = Command::new(bin())
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install Debian's docker-registry package (.ci/run does)",
                    bin().display()
                )
            });
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let client = Pki::shared()
            .client(None)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let url = format!("https://{}/v2/", self.host);
        let log = self.dir.path().join("log");
        let child = self.child.as_mut().expect("spawned");
        eventually("docker-registry answers", Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "docker-registry exited at start ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let (client, url) = (client.clone(), url.clone());
            async move {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => Ok(()),
                    Ok(r) => Err(format!("answered {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
    }

    /// Kills it (SIGKILL) and waits for it to exit; the port is free when this returns.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its log (access log included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Pushes the local image `local` as `HOST/name:tag`, logged in as `user`; returns the
    /// pushed manifest's digest (`sha256:…`). The local `HOST/name:tag` tag and
    /// `HOST/name@digest` reference are removed afterwards, so a later pull of either must
    /// really go to the registry.
    pub fn push(
        &self,
        local: &str,
        name: &str,
        tag: &str,
        user: &str,
        password: &str,
    ) -> anyhow::Result<String> {
        let config = self.dir.path().join("docker-config");
        std::fs::create_dir_all(&config)?;
        docker(
            &config,
            &["login", &self.host, "-u", user, "--password-stdin"],
            Some(password),
        )?;
        let target = format!("{}:{tag}", self.repo(name));
        docker(&config, &["tag", local, &target], None)?;
        let out = docker(&config, &["push", &target], None);
        let _ = docker(&config, &["rmi", &target], None);
        let out = out?;
        // The last line reads `TAG: digest: sha256:… size: N`.
        let digest = out
            .split_whitespace()
            .skip_while(|w| *w != "digest:")
            .nth(1)
            .map(str::to_string)
            .with_context(|| format!("no digest in docker push's output: {out}"))?;
        let _ = docker(
            &config,
            &["rmi", &format!("{}@{digest}", self.repo(name))],
            None,
        );
        Ok(digest)
    }

    /// Like [`RegistryProc::push`], for an image nothing on this host has: a build of
    /// `local` with a unique label (its own config blob), pushed, then deleted locally, so
    /// a pull must fetch its manifest and config from the registry (the layers are
    /// shared with `local` and stay).
    pub fn push_unique(
        &self,
        local: &str,
        name: &str,
        tag: &str,
        user: &str,
        password: &str,
    ) -> anyhow::Result<String> {
        let config = self.dir.path().join("docker-config");
        std::fs::create_dir_all(&config)?;
        let built = format!("sluice-test-unique-{}", uuid::Uuid::new_v4().simple());
        docker(
            &config,
            &["build", "-q", "-t", &built, "-"],
            Some(&format!("FROM {local}\nLABEL sluice.test.unique={built}\n")),
        )?;
        let pushed = self.push(&built, name, tag, user, password);
        let _ = docker(&config, &["rmi", &built], None);
        pushed
    }

    /// The digest the registry serves for `name:reference` (`HEAD` on the manifest with
    /// basic auth), or `None` when it answers anything but 200.
    pub async fn digest(
        &self,
        name: &str,
        reference: &str,
        user: &str,
        password: &str,
    ) -> Option<String> {
        let r = Pki::shared()
            .client(None)
            .build()
            .ok()?
            .head(format!("https://{}/v2/{name}/manifests/{reference}", self.host))
            .basic_auth(user, Some(password))
            .header(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
            )
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.headers()
            .get("Docker-Content-Digest")?
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

impl Drop for RegistryProc {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn push_with_a_password_needing_url_safe_base64_then_stop_and_restart() {
        crate::testapp_image::ensure_test_images().unwrap();
        // `??>>~~`: the auth JSON's standard base64 holds `+` and `/` (NOTES.md).
        let mut reg = RegistryProc::start(&[("acc", "s3cret"), ("acc2", "??>>~~")]).await;
        let local = crate::testapp_image::image("v1");
        let d1 = reg.push(&local, "acc/web", "v1", "acc2", "??>>~~").unwrap();
        assert!(d1.starts_with("sha256:"), "{d1}");
        assert_eq!(
            reg.digest("acc/web", "v1", "acc", "s3cret")
                .await
                .as_deref(),
            Some(d1.as_str())
        );
        assert_eq!(reg.digest("acc/web", "v1", "acc", "wrong").await, None);
        assert_eq!(reg.digest("acc/web", "nope", "acc", "s3cret").await, None);
        let wrong = reg
            .push(&local, "acc/web", "v1", "acc", "wrong")
            .unwrap_err();
        assert!(format!("{wrong:#}").contains("login"), "{wrong:#}");

        reg.stop();
        assert_eq!(reg.digest("acc/web", "v1", "acc", "s3cret").await, None);
        reg.restart().await;
        assert_eq!(
            reg.digest("acc/web", "v1", "acc", "s3cret")
                .await
                .as_deref(),
            Some(d1.as_str())
        );
        // Re-pushing the tag to another build moves it.
        let d2 = reg
            .push(
                &crate::testapp_image::image("v2"),
                "acc/web",
                "v1",
                "acc",
                "s3cret",
            )
            .unwrap();
        assert_ne!(d1, d2);
        assert_eq!(
            reg.digest("acc/web", "v1", "acc", "s3cret")
                .await
                .as_deref(),
            Some(d2.as_str())
        );
        assert_eq!(
            reg.digest("acc/web", &d1, "acc", "s3cret").await.as_deref(),
            Some(d1.as_str())
        );
    }
}
