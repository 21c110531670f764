//! `sluice ca`: create the project CA, issue certificates, show what a certificate says.
//!
//! Files: the CA directory holds `ca.pem` (public) and `ca.key` (mode 0600); `issue` writes
//! `NAME.pem` and `NAME.key` (mode 0600) plus a copy of `ca.pem` into the output directory,
//! the layout `TlsFiles::in_dir(dir, NAME)` reads. Files are written to a temporary name
//! and renamed, so a node that reloads on file changes never reads half a file.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Subcommand, ValueEnum};
use sluice_common::tls::{self, PeerIdentity, Role};

use super::CliError;

/// `sluice ca …`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new project CA: DIR/ca.pem and DIR/ca.key (mode 0600). Never overwrites.
    Init {
        /// Where the CA lives.
        #[arg(long, default_value = ".", env = "SLUICE_CA_DIR")]
        dir: PathBuf,
    },
    /// Issue a certificate naming a role and a name, signed by the CA in DIR.
    Issue {
        /// What the holder may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The holder's name: node name, server name or client name (a-z, 0-9, '-').
        #[arg(long, value_parser = parse_name)]
        name: String,
        /// An extra DNS name or IP address peers use to reach the holder (repeatable).
        #[arg(long = "san", value_name = "DNS_OR_IP")]
        sans: Vec<String>,
        /// Days of validity.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// Where the CA lives.
        #[arg(long, default_value = ".", env = "SLUICE_CA_DIR")]
        dir: PathBuf,
        /// Where to write NAME.pem and NAME.key (default: the CA directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing NAME.pem/NAME.key (certificate rotation).
        #[arg(long)]
        force: bool,
    },
    /// Show a certificate's role, name, SANs and validity.
    Show {
        /// A PEM certificate file.
        file: PathBuf,
    },
}

/// The `--role` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// A coordinator node.
    Coordinator,
    /// An agent on one server.
    Agent,
    /// An operator or CI client.
    Client,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Coordinator => Role::Coordinator,
            RoleArg::Agent => Role::Agent,
            RoleArg::Client => Role::Client,
        }
    }
}

fn parse_name(s: &str) -> Result<String, String> {
    PeerIdentity::new(Role::Client, s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// Runs `sluice ca …`.
pub fn run(cmd: CaCommand) -> Result<(), CliError> {
    match cmd {
        CaCommand::Init { dir } => init(&dir),
        CaCommand::Issue {
            role,
            name,
            sans,
            days,
            dir,
            out,
            force,
        } => {
            let out = out.unwrap_or_else(|| dir.clone());
            issue(&dir, &out, role.into(), &name, &sans, days, force)
        }
        CaCommand::Show { file } => show(&file),
    }
}

fn init(dir: &Path) -> Result<(), CliError> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    for existing in [&cert_path, &key_path] {
        if existing.exists() {
            return Err(CliError::Exists(format!(
                "refusing to overwrite the existing CA: {} exists (a new CA would orphan \
                 every certificate it issued)",
                existing.display()
            )));
        }
    }
    create_dir(dir)?;
    let ca = tls::ca_init()?;
    // Key first: a crash in between leaves a key without a certificate, which `init`
    // still refuses to overwrite, rather than a certificate nobody can sign with.
    write_file(&key_path, ca.key_pem.as_bytes(), 0o600, false)?;
    write_file(&cert_path, ca.cert_pem.as_bytes(), 0o644, false)?;
    println!("{}", cert_path.display());
    println!("{}", key_path.display());
    Ok(())
}

fn issue(
    dir: &Path,
    out: &Path,
    role: Role,
    name: &str,
    sans: &[String],
    days: u32,
    force: bool,
) -> Result<(), CliError> {
    let (ca_cert_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    let ca_cert = read(&ca_cert_path)?;
    check_private(&ca_key_path)?;
    let ca_key = read(&ca_key_path)?;
    let (cert_path, key_path) = (
        out.join(format!("{name}.pem")),
        out.join(format!("{name}.key")),
    );
    if !force {
        for existing in [&cert_path, &key_path] {
            if existing.exists() {
                return Err(CliError::Exists(format!(
                    "refusing to overwrite {}; pass --force to replace it",
                    existing.display()
                )));
            }
        }
    }
    let issued = tls::issue(&ca_cert, &ca_key, role, name, sans, days)?;
    create_dir(out)?;
    write_file(&key_path, issued.key_pem.as_bytes(), 0o600, true)?;
    write_file(&cert_path, issued.cert_pem.as_bytes(), 0o644, true)?;
    println!("{}", cert_path.display());
    println!("{}", key_path.display());
    let out_ca = out.join("ca.pem");
    if !out_ca.exists() {
        write_file(&out_ca, ca_cert.as_bytes(), 0o644, false)?;
        println!("{}", out_ca.display());
    }
    Ok(())
}

fn show(file: &Path) -> Result<(), CliError> {
    let pem = read(file)?;
    let certs = tls::config::certs_from_pem("certificate", &pem)?;
    let s =
        tls::describe(&certs[0]).map_err(|e| CliError::Data(format!("{}: {e}", file.display())))?;
    let none = "-".to_string();
    println!("file:        {}", file.display());
    println!(
        "subject:     CN={}",
        s.common_name.as_deref().unwrap_or("-")
    );
    match &s.identity {
        Ok(id) => {
            println!("role:        {}", id.role);
            println!("name:        {}", id.name);
        }
        Err(_) if s.is_ca => println!("role:        CA"),
        Err(e) => println!("identity:    none ({e})"),
    }
    println!(
        "SANs:        {}",
        if s.sans.is_empty() {
            none
        } else {
            s.sans.join(", ")
        }
    );
    println!(
        "not before:  {}",
        humantime::format_rfc3339_seconds(s.not_before)
    );
    println!(
        "not after:   {} ({})",
        humantime::format_rfc3339_seconds(s.not_after),
        remaining(s.not_after, SystemTime::now())
    );
    Ok(())
}

fn remaining(not_after: SystemTime, now: SystemTime) -> String {
    let days = |d: Duration| d.as_secs() / 86_400;
    match not_after.duration_since(now) {
        Ok(left) => format!("expires in {} days", days(left)),
        Err(e) => format!("EXPIRED {} days ago", days(e.duration())),
    }
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CliError::NoInput {
                path: path.to_path_buf(),
                source,
            }
        } else {
            CliError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// The CA key must not be readable by anyone but its owner.
fn check_private(path: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o777,
        Err(_) => return Ok(()), // `read` reports the missing file
    };
    if mode & 0o077 != 0 {
        return Err(CliError::Data(format!(
            "{}: the CA key is readable by group or others (mode {mode:o}); run chmod 600 on it",
            path.display()
        )));
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CliError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes `bytes` to `path` with `mode` from the moment the file exists. With `replace`,
/// writes a temporary file beside it and renames it over `path`; without, refuses to
/// replace anything (`create_new`).
pub(crate) fn write_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    replace: bool,
) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                CliError::Exists(format!("refusing to overwrite {}", path.display()))
            } else {
                CliError::Io { path, source }
            }
        }
    };
    let target = if replace {
        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()))
    } else {
        path.to_path_buf()
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&target)
        .map_err(io(&target))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(&target));
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&target);
        return Err(e);
    }
    if replace {
        if let Err(e) = std::fs::rename(&target, path) {
            let _ = std::fs::remove_file(&target);
            return Err(io(path)(e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_says_expired() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100 * 86_400);
        let later = now + Duration::from_secs(3 * 86_400 + 5);
        assert_eq!(remaining(later, now), "expires in 3 days");
        assert_eq!(remaining(now, later), "EXPIRED 3 days ago");
    }
}
