//! `routes.json` in the state directory: the route table, written before any change is
//! answered (temp file, fsync, rename, fsync of the directory), read on start.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_common::names::ServiceName;
use sluice_common::proxy::RouteSpec;

/// The format version written; a file with another one is refused, never guessed at.
pub const FORMAT_VERSION: u32 = 1;

/// One persisted route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    /// The live spec.
    pub spec: RouteSpec,
    /// Its generation.
    pub generation: u64,
}

/// The file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Routes by service.
    pub routes: BTreeMap<ServiceName, Stored>,
}

/// Why the table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not a route table this version understands.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The table's path in a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("routes.json")
}

/// Reads the table; a missing file is an empty table.
pub fn load(state_dir: &Path) -> Result<BTreeMap<ServiceName, Stored>, PersistError> {
    let p = path(state_dir);
    let text = match std::fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => return Err(PersistError::Io { path: p, source }),
    };
    let file: RouteFile = serde_json::from_slice(&text).map_err(|e| PersistError::Format {
        path: p.clone(),
        message: e.to_string(),
    })?;
    if file.version != FORMAT_VERSION {
        return Err(PersistError::Format {
            path: p,
            message: format!(
                "format version {} (this proxy reads {FORMAT_VERSION})",
                file.version
            ),
        });
    }
    Ok(file.routes)
}

/// Writes the table durably: it is on disk when this returns.
pub fn save(state_dir: &Path, routes: &BTreeMap<ServiceName, Stored>) -> Result<(), PersistError> {
    let p = path(state_dir);
    let io = |source| PersistError::Io {
        path: p.clone(),
        source,
    };
    let file = RouteFile {
        version: FORMAT_VERSION,
        routes: routes.clone(),
    };
    let text = serde_json::to_vec_pretty(&file).expect("route table serializes");
    let tmp = state_dir.join(".routes.json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&text).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &p).map_err(io)?;
    std::fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let spec: RouteSpec = serde_json::from_str(
            r#"{"listen":"0.0.0.0:20001","targets":[{"name":"a","addr":"127.0.0.1:3000"}]}"#,
        )
        .unwrap();
        let mut t = BTreeMap::new();
        t.insert(
            ServiceName::parse("web").unwrap(),
            Stored {
                spec,
                generation: 4,
            },
        );
        save(dir.path(), &t).unwrap();
        assert_eq!(load(dir.path()).unwrap(), t);
        std::fs::write(path(dir.path()), r#"{"version":9,"routes":{}}"#).unwrap();
        assert!(matches!(load(dir.path()), Err(PersistError::Format { .. })));
    }
}
