//! `sluice keys rotate --key-file PATH`: add a fresh cluster key for secrets at rest.
//!
//! Run it on one coordinator's key file, copy the file to every coordinator, then restart
//! them one by one: new secrets are sealed with the new key (the file's last line), and
//! every value sealed under an older key still opens, since each names its key.

use std::path::PathBuf;

use clap::Subcommand;

use super::CliError;

/// `sluice keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Append a new random key to the key file (created, mode 0600, if missing); prints its id.
    Rotate {
        /// The coordinators' `[secrets] key_file`.
        #[arg(long)]
        key_file: PathBuf,
    },
}

/// Runs a keys subcommand.
pub fn run(cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::Rotate { key_file } => {
            let id = crate::secrets::keyfile::rotate(&key_file).map_err(CliError::Usage)?;
            eprintln!(
                "key {id} added to {}: copy the file to every coordinator and restart them one by one",
                key_file.display()
            );
            println!("{id}");
            Ok(())
        }
    }
}
