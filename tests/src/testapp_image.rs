//! The test workload's Docker images, built locally (there is no registry).
//!
//! [`ensure_test_images`] builds `sluice-testapp` as a static binary and wraps it in
//! `FROM scratch` images:
//!
//! | tag | environment |
//! |---|---|
//! | `sluice-testapp:v1` | `TESTAPP_VERSION=v1` |
//! | `sluice-testapp:v2` | `TESTAPP_VERSION=v2` |
//! | `sluice-testapp:broken` | `TESTAPP_VERSION=broken`, `TESTAPP_HEALTH=fail` |
//! | `sluice-testapp:hc` | `TESTAPP_VERSION=hc` and a Docker `HEALTHCHECK` (`--probe`) |
//! | `sluice-testapp:late` | `TESTAPP_VERSION=late`, `/health` failing from 5 s after its start |
//!
//! Every image carries the label `sluice.testapp.hash` (a hash of the binary); an image whose
//! label matches the binary just built is not rebuilt. A process builds at most once, and
//! processes (parallel test binaries) serialise on a lock file in the target directory.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;

// The build steps themselves are shared with `sluice dev --demo`, which cannot depend on
// this crate; std-only, so it compiles in either crate.
#[path = "../../coordinator/src/cli/testapp_build.rs"]
mod build;

/// The image repository.
pub const REPOSITORY: &str = "sluice-testapp";

/// `(tag, extra Dockerfile lines)` of every test image.
const TAGS: &[(&str, &str)] = &[
    ("v1", "ENV TESTAPP_VERSION=v1\n"),
    ("v2", "ENV TESTAPP_VERSION=v2\n"),
    (
        "broken",
        "ENV TESTAPP_VERSION=broken TESTAPP_HEALTH=fail\n",
    ),
    (
        "late",
        "ENV TESTAPP_VERSION=late TESTAPP_HEALTH_FAIL_AFTER_MS=5000\n",
    ),
    (
        "hc",
        "ENV TESTAPP_VERSION=hc\nHEALTHCHECK --interval=1s --timeout=2s --retries=3 CMD [\"/testapp\", \"--probe\"]\n",
    ),
];

/// `sluice-testapp:<tag>`.
pub fn image(tag: &str) -> String {
    format!("{REPOSITORY}:{tag}")
}

/// Builds the test images unless they are already there for the current binary.
pub fn ensure_test_images() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| build_all().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The static `sluice-testapp` binary, built if needed (no Docker): for tests that run the
/// workload as a plain process. `cargo test --workspace` does not put the package's own
/// binary in `target/debug` on a fresh checkout, so tests must not look for it there.
pub fn testapp_binary() -> anyhow::Result<PathBuf> {
    let (root, target_dir, _lock) = locked()?;
    build::build_binary(&root, &target_dir).map_err(anyhow::Error::msg)
}

/// The workspace root and the test app's own target directory, with that directory's
/// lock held (processes building it, test binaries in parallel, serialise on it).
fn locked() -> anyhow::Result<(PathBuf, PathBuf, std::fs::File)> {
    let root = workspace_root();
    anyhow::ensure!(
        root.join(build::SOURCE).is_file(),
        "the sample app's source {} is missing",
        root.join(build::SOURCE).display()
    );
    // A target directory of its own: the static-linking RUSTFLAGS would otherwise invalidate
    // the host build, and the outer `cargo test` may still hold the main directory's lock.
    let target_dir = root.join("target").join("testapp");
    std::fs::create_dir_all(&target_dir)?;
    let lock = std::fs::File::create(target_dir.join("images.lock"))?;
    lock.lock().context("locking the test image lock file")?;
    Ok((root, target_dir, lock))
}

fn build_all() -> anyhow::Result<()> {
    let (root, target_dir, _lock) = locked()?;
    let bin = build::build_binary(&root, &target_dir).map_err(anyhow::Error::msg)?;
    let bytes = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(&bytes);
    let hash = format!("{:016x}-{}", h.finish(), bytes.len());

    let ctx = target_dir.join("docker-context");
    std::fs::create_dir_all(&ctx)?;
    std::fs::copy(&bin, ctx.join("testapp"))?;
    for (tag, extra) in TAGS {
        let name = image(tag);
        if image_hash(&name).as_deref() == Some(hash.as_str()) {
            continue;
        }
        let dockerfile = build::dockerfile(extra, &[("sluice.testapp.hash", &hash)]);
        build::docker_build(&ctx, &name, &dockerfile).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

fn image_hash(name: &str) -> Option<String> {
    build::image_label(name, "sluice.testapp.hash")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_images_idempotently() {
        ensure_test_images().unwrap();
        let a = image_hash(&image("v1")).expect("v1 exists");
        build_all().unwrap();
        assert_eq!(image_hash(&image("v1")).unwrap(), a);
        assert!(image_hash(&image("broken")).is_some());
    }
}
