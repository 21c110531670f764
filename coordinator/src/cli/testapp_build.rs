//! Building the sample app (`tests/testapp`, std only) into `FROM scratch` images.
//!
//! Shared by `sluice dev --demo` and the test harness (`tests/src/testapp_image.rs`
//! includes this file with `#[path]`), so the demo runs exactly what the tests run. It
//! uses std alone and reports errors as text, which is all both callers need: the harness
//! cannot depend on the coordinator crate (the coordinator's tests depend on the harness),
//! and the demo has nothing to do with a failed build but say why.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The sample app's source, relative to the workspace root.
pub const SOURCE: &str = "tests/testapp/Cargo.toml";

/// The target triple the app is built for: this machine's architecture, Linux, glibc,
/// linked statically so it runs in an empty image.
pub fn triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// Builds `sluice-testapp` statically with `cargo` into `target_dir` (a directory of its
/// own: the static-linking RUSTFLAGS would otherwise invalidate the workspace's build) and
/// returns the binary.
pub fn build_binary(root: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let triple = triple();
    let out = Command::new(&cargo)
        .current_dir(root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "build",
            "--quiet",
            "-p",
            "sluice-testapp",
            "--target",
            &triple,
        ])
        .output()
        .map_err(|e| format!("running {cargo} to build sluice-testapp: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building sluice-testapp failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target_dir.join(triple).join("debug").join("sluice-testapp"))
}

/// The Dockerfile of one image: the binary at `/testapp` in an empty image, `extra` lines
/// (`ENV`, `HEALTHCHECK`), and `labels`.
pub fn dockerfile(extra: &str, labels: &[(&str, &str)]) -> String {
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("LABEL {k}={v}\n"))
        .collect();
    format!(
        "FROM scratch\nCOPY testapp /testapp\n{extra}{labels}EXPOSE 8080\nENTRYPOINT [\"/testapp\"]\n"
    )
}

/// Builds image `name` from `dockerfile` in `context` (which must hold `testapp`).
pub fn docker_build(context: &Path, name: &str, dockerfile: &str) -> Result<(), String> {
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let file = context.join(format!("Dockerfile.{safe}"));
    std::fs::write(&file, dockerfile).map_err(|e| format!("{}: {e}", file.display()))?;
    let out = Command::new("docker")
        .arg("build")
        .arg("--quiet")
        .arg("-t")
        .arg(name)
        .arg("-f")
        .arg(&file)
        .arg(context)
        .output()
        .map_err(|e| format!("running docker build: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "docker build {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A label of a local image, if the image exists.
pub fn image_label(name: &str, label: &str) -> Option<String> {
    let out = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            &format!("{{{{index .Config.Labels {label:?}}}}}"),
            name,
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dockerfiles_are_from_scratch() {
        let d = super::dockerfile("ENV A=b\n", &[("x.y", "1")]);
        assert_eq!(
            d,
            "FROM scratch\nCOPY testapp /testapp\nENV A=b\nLABEL x.y=1\nEXPOSE 8080\nENTRYPOINT [\"/testapp\"]\n"
        );
    }
}
