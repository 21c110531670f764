//! `sluice.toml`: the service file kept in the app's repository.
//!
//! One or more `[[service]]` tables, each what `sluice deploy` would otherwise take as flags:
//! the image *repository* (the tag comes at deploy time, `--tag "$CI_COMMIT_SHA"`), targets,
//! ports, environment, health check, strategy and container spec. Secret values are never
//! written in the file: an entry names where to take them at deploy time
//! (`{ from_env = "DB_PASSWORD", secret = true }` or `{ from_file = "…" }`). Every field is
//! parsed by the API's own types, so a mistake is reported with its line and column before
//! anything is sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sluice_common::api::{CanarySpec, CreateDeploymentRequest, HealthCheck, Strategy};
use sluice_common::container::ContainerSpec;
use sluice_common::names::{EnvName, Label, ServerName, ServiceName};
use sluice_common::ports::Port;
use sluice_common::time::DurationSpec;

/// A whole service file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    /// The services, in file order.
    #[serde(rename = "service")]
    pub services: Vec<Entry>,
}

/// One `[[service]]` table.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The service's name.
    pub name: ServiceName,
    /// The image repository (`registry.example.com/web`); with a tag or digest only when
    /// deploys do not pass `--tag`.
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    servers: Vec<ServerName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    selector: Vec<Label>,
    #[serde(default = "default_container_port")]
    container_port: Port,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<Port>,
    #[serde(default, skip_serializing)]
    env: BTreeMap<EnvName, EnvSource>,
    #[serde(default = "default_health")]
    health: HealthCheck,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    strategy: Option<Strategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    canary: Option<CanarySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_healthy: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drain_timeout: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lock_wait: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_parallel: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    progress_deadline: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    allow_labels: Vec<Label>,
    #[serde(default, skip_serializing_if = "ContainerSpec::is_default")]
    spec: ContainerSpec,
}

fn default_container_port() -> Port {
    serde_json::from_value(json!(8080)).expect("a valid port")
}

fn default_health() -> HealthCheck {
    serde_json::from_value(json!({"kind": "tcp"})).expect("a valid health check")
}

/// Where an environment value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawEnv")]
pub enum EnvSource {
    /// Written in the file (never a secret).
    Value(String),
    /// The deploying process's environment variable of this name.
    FromEnv {
        /// The variable.
        var: String,
        /// Redacted everywhere but in the container.
        secret: bool,
    },
    /// A file's content (trailing newline trimmed), relative to the service file.
    FromFile {
        /// The file.
        path: PathBuf,
        /// Redacted everywhere but in the container.
        secret: bool,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawEnv {
    Value(String),
    Table(BTreeMap<String, toml::Value>),
}

impl TryFrom<RawEnv> for EnvSource {
    type Error = String;

    fn try_from(raw: RawEnv) -> Result<Self, String> {
        let t = match raw {
            RawEnv::Value(v) => return Ok(EnvSource::Value(v)),
            RawEnv::Table(t) => t,
        };
        if t.contains_key("value") {
            return Err(
                "a value in a table: write it as a plain string, and never a secret \
                        (take secrets from the CI environment with from_env, or from_file)"
                    .into(),
            );
        }
        if let Some(k) = t
            .keys()
            .find(|k| !["from_env", "from_file", "secret"].contains(&k.as_str()))
        {
            return Err(format!(
                "unknown key {k:?}: expected from_env or from_file, and secret"
            ));
        }
        let secret = match t.get("secret") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => return Err("secret must be true or false".into()),
        };
        let text = |k: &str| match t.get(k) {
            None => Ok(None),
            Some(toml::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(format!("{k} must be a non-empty string")),
        };
        match (text("from_env")?, text("from_file")?) {
            (Some(var), None) => Ok(EnvSource::FromEnv { var, secret }),
            (None, Some(path)) => Ok(EnvSource::FromFile {
                path: path.into(),
                secret,
            }),
            _ => Err("give exactly one of from_env and from_file".into()),
        }
    }
}

/// Parses a service file's text; an error names the line and column.
pub fn parse(text: &str) -> Result<ServiceFile, String> {
    let f: ServiceFile = toml::from_str(text).map_err(|e| e.to_string())?;
    if f.services.is_empty() {
        return Err("the file names no [[service]]".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &f.services {
        if !seen.insert(s.name.to_string()) {
            return Err(format!("service {} is described twice", s.name));
        }
    }
    Ok(f)
}

/// The image to deploy: the repository with `tag`, or the file's image as written when no
/// tag is given (then it must carry a tag or digest).
fn image(repo: &str, tag: Option<&str>) -> Result<String, String> {
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let tagged = last.contains(':') || repo.contains('@');
    match (tag, tagged) {
        (Some(t), false) => Ok(format!("{repo}:{t}")),
        (Some(_), true) => Err(format!(
            "image {repo:?} already names a tag or digest: write the repository only, or deploy without --tag"
        )),
        (None, true) => Ok(repo.to_string()),
        (None, false) => Err(format!(
            "image {repo:?} has no tag: pass --tag (e.g. --tag \"$CI_COMMIT_SHA\")"
        )),
    }
}

/// Where deploy-time values come from: the process environment and files beside the
/// service file (a seam, so tests need not touch the real environment).
pub trait Sources {
    /// An environment variable's value.
    fn var(&self, name: &str) -> Option<String>;
    /// A file's content.
    fn file(&self, path: &Path) -> std::io::Result<String>;
}

/// The real environment, files relative to `dir`.
#[derive(Debug)]
pub struct Process {
    /// The service file's directory.
    pub dir: PathBuf,
}

impl Sources for Process {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(self.dir.join(path))
    }
}

/// Stand-ins for every deploy-time value: what `sluice validate` checks offline.
#[derive(Debug)]
pub struct Offline;

impl Sources for Offline {
    fn var(&self, _: &str) -> Option<String> {
        Some("<from the environment>".into())
    }
    fn file(&self, _: &Path) -> std::io::Result<String> {
        Ok("<from a file>".into())
    }
}

impl Entry {
    /// The deployment request for this entry, `tag` applied and values taken from `src`.
    pub fn request(
        &self,
        tag: Option<&str>,
        src: &dyn Sources,
    ) -> Result<CreateDeploymentRequest, String> {
        let mut v = serde_json::to_value(self).expect("serializable");
        let name = &self.name;
        v["image"] = json!(image(&self.image, tag).map_err(|e| format!("service {name}: {e}"))?);
        let mut env = serde_json::Map::new();
        for (k, source) in &self.env {
            let (value, secret) = match source {
                EnvSource::Value(s) => (s.clone(), false),
                EnvSource::FromEnv { var, secret } => (
                    src.var(var).ok_or_else(|| {
                        format!("service {name}: env {k} is taken from ${var}, which is not set")
                    })?,
                    *secret,
                ),
                EnvSource::FromFile { path, secret } => {
                    let text = src.file(path).map_err(|e| {
                        format!("service {name}: env {k} from {}: {e}", path.display())
                    })?;
                    (text.trim_end_matches(['\n', '\r']).to_string(), *secret)
                }
            };
            env.insert(k.to_string(), json!({"value": value, "secret": secret}));
        }
        v["env"] = Value::Object(env);
        let object = v.as_object_mut().expect("an object");
        let service = object.remove("name").expect("a name");
        object.insert("service".into(), service);
        let req: CreateDeploymentRequest =
            serde_json::from_value(v).map_err(|e| format!("service {name}: {e}"))?;
        if req.servers.is_empty() && req.selector.is_empty() {
            return Err(format!("service {name}: name servers or a selector"));
        }
        if let Some((field, why)) = req.spec.problems().into_iter().next() {
            return Err(format!("service {name}: spec.{field}: {why}"));
        }
        Ok(req)
    }
}

/// The requests of a file's services (only `only`, when given), in file order.
pub fn requests(
    file: &ServiceFile,
    only: Option<&str>,
    tag: Option<&str>,
    src: &dyn Sources,
) -> Result<Vec<CreateDeploymentRequest>, String> {
    let chosen: Vec<&Entry> = file
        .services
        .iter()
        .filter(|s| only.is_none_or(|o| s.name.as_str() == o))
        .collect();
    if chosen.is_empty() {
        return Err(format!(
            "the file describes no service {:?} (it has: {})",
            only.unwrap_or_default(),
            file.services
                .iter()
                .map(|s| s.name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    chosen.into_iter().map(|e| e.request(tag, src)).collect()
}

#[cfg(test)]
mod tests;
