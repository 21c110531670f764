//! `sluice dev --demo`: once the dev coordinator and agent are up, show what Sluice is for.
//!
//! 1. Build the sample app (`tests/testapp`, a std-only HTTP server) statically with cargo
//!    and wrap it in two `FROM scratch` images: `sluice-demo:v1`, and `sluice-demo:v2`
//!    whose `/health` answers 500.
//! 2. Deploy v1 to the local agent and follow it.
//! 3. Deploy the broken v2, follow it through its failing health check and the automatic
//!    rollback, and show v1 answering again.
//!
//! The images are built from source, so the demo needs a Sluice source checkout (the one
//! this binary was built from, or the current directory or one above it). Without one it
//! says so and stops, unless both images are already in the local Docker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::deploy::{follow, show};
use super::http::{as_request, Conn};
use super::output::OutputArg;
use super::testapp_build as build;
use super::CliError;
use sluice_common::api::CreateDeploymentRequest;

/// The demo's service.
pub const SERVICE: &str = "demo";
/// The good image.
pub const V1: &str = "sluice-demo:v1";
/// The image whose health check fails.
pub const V2: &str = "sluice-demo:v2";
const HASH_LABEL: &str = "sluice.demo.hash";

/// Runs the demo against the dev cluster at `conn`, deploying to `server`.
pub async fn run(conn: &Conn, server: &str) -> Result<(), CliError> {
    step("1/3", "building the sample app images");
    tokio::task::spawn_blocking(ensure_images)
        .await
        .map_err(|e| CliError::Data(format!("building the images: {e}")))??;

    step("2/3", &format!("deploying {V1} to {server}"));
    let d = deploy(conn, V1, server).await?;
    if d["state"] != "success" {
        show(&d, OutputArg::default());
        return Err(CliError::DeployFailed(format!(
            "the demo's {V1} did not deploy ({}); see the agent's log",
            d["state"].as_str().unwrap_or("?")
        )));
    }
    let port = port(conn, server).await;
    say(&format!(
        "{V1} is live{}",
        port.map(|p| format!(" on 127.0.0.1:{p}"))
            .unwrap_or_default()
    ));
    if let Some(p) = port {
        say(&format!("GET /version -> {}", version(p).await));
    }

    step(
        "3/3",
        &format!("deploying {V2}, whose /health answers 500: Sluice should roll it back"),
    );
    let d = deploy(conn, V2, server).await?;
    show(&d, OutputArg::default());
    match d["state"].as_str().unwrap_or("") {
        "rolled_back" => say(&format!(
            "{V2} failed its health check; Sluice put {V1} back on its own"
        )),
        other => {
            return Err(CliError::DeployFailed(format!(
                "expected {V2} to be rolled back, but the deployment is {other}"
            )))
        }
    }
    if let Some(p) = port {
        say(&format!("GET /version -> {}", version(p).await));
    }
    say("the demo is over; the history is at GET /v1/deployments?service=demo");
    Ok(())
}

fn step(n: &str, what: &str) {
    println!("\n== demo {n}: {what}");
}

fn say(what: &str) {
    println!("   {what}");
}

/// Deploys `image` and follows it to the end; the final record.
async fn deploy(conn: &Conn, image: &str, server: &str) -> Result<Value, CliError> {
    let body = json!({
        "service": SERVICE, "image": image, "servers": [server], "container_port": 8080,
        "health": {"kind": "http", "path": "/health"},
    });
    let req: CreateDeploymentRequest = as_request(&body)?;
    let d = conn.api()?.create_deployment(&req, None).await?.deployment;
    let id = d.id.to_string();
    say(&format!("deployment {id} accepted; following it:"));
    follow(conn, &id).await
}

/// The demo service's host port on `server`.
async fn port(conn: &Conn, server: &str) -> Option<u64> {
    let services = conn.api().ok()?.services().await.ok()?;
    let port = services
        .iter()
        .find(|s| s.service.as_str() == SERVICE)?
        .servers
        .iter()
        .find(|s| s.server.as_str() == server)?
        .port;
    Some(u64::from(port))
}

/// What the app at `port` says its version is.
async fn version(port: u64) -> String {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build();
    let answer = match client {
        Ok(c) => match c
            .get(format!("http://127.0.0.1:{port}/version"))
            .send()
            .await
        {
            Ok(r) => r.text().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    match answer {
        Ok(body) => body.trim().to_string(),
        Err(e) => format!("(no answer: {e})"),
    }
}

/// The Sluice source tree: the one this binary was built from, else the current directory
/// or one above it.
fn source_tree() -> Option<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    let cwd = std::env::current_dir().ok();
    built_from
        .into_iter()
        .chain(
            cwd.iter()
                .flat_map(|d| d.ancestors().map(Path::to_path_buf)),
        )
        .find(|root| root.join(build::SOURCE).is_file())
}

/// Builds both images from source when the source is here (a no-op when they are already
/// built from this very binary); without the source, accepts images already present.
fn ensure_images() -> Result<(), CliError> {
    let Some(root) = source_tree() else {
        if build::image_label(V1, HASH_LABEL).is_some()
            && build::image_label(V2, HASH_LABEL).is_some()
        {
            say("no Sluice source tree here; using the demo images already in Docker");
            return Ok(());
        }
        return Err(CliError::Usage(format!(
            "`sluice dev --demo` builds its sample app from the Sluice source tree \
             ({}), and there is none here nor where this binary was built. Run it from a \
             source checkout, or try Sluice with an image of your own: `sluice dev`, then \
             `sluice deploy --image ... --server local --wait`",
            build::SOURCE
        )));
    };
    say(&format!(
        "cargo build -p sluice-testapp (static) in {}",
        root.display()
    ));
    let target = root.join("target").join("testapp");
    let fail = |e: String| CliError::Data(e);
    let bin = build::build_binary(&root, &target).map_err(fail)?;
    let bytes = std::fs::read(&bin).map_err(|source| CliError::Io {
        path: bin.clone(),
        source,
    })?;
    let hash = format!("{:016x}-{}", fnv1a(&bytes), bytes.len());
    let ctx = target.join("demo-context");
    std::fs::create_dir_all(&ctx).map_err(|source| CliError::Io {
        path: ctx.clone(),
        source,
    })?;
    std::fs::copy(&bin, ctx.join("testapp")).map_err(|source| CliError::Io {
        path: ctx.join("testapp"),
        source,
    })?;
    for (name, env) in [
        (V1, "ENV TESTAPP_VERSION=v1\n"),
        (V2, "ENV TESTAPP_VERSION=v2 TESTAPP_HEALTH=fail\n"),
    ] {
        if build::image_label(name, HASH_LABEL).as_deref() == Some(hash.as_str()) {
            say(&format!("{name} is up to date"));
            continue;
        }
        build::docker_build(&ctx, name, &build::dockerfile(env, &[(HASH_LABEL, &hash)]))
            .map_err(fail)?;
        say(&format!("built {name}"));
    }
    Ok(())
}

/// FNV-1a: a stable content hash (std's hasher may change between releases), enough to
/// tell whether an image holds this binary.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
