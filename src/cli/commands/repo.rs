//! `swamp repo init`.

use crate::cli::error::CliError;
use crate::cli::output::Render;
use crate::infrastructure::repo_files::init_repo;
use serde_json::{json, Value};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Result of `repo init`.
pub struct InitResult {
    repo_dir: PathBuf,
    repo_id: uuid::Uuid,
    already: bool,
}

/// Creates (or keeps) the repo at `repo_dir`.
pub fn init(repo_dir: &Path) -> Result<InitResult, CliError> {
    let outcome = init_repo(repo_dir)?;
    Ok(InitResult {
        repo_dir: repo_dir.to_path_buf(),
        repo_id: outcome.repo_id,
        already: outcome.already_initialized,
    })
}

impl Render for InitResult {
    fn to_json(&self) -> Value {
        json!({
            "repoDir": self.repo_dir,
            "repoId": self.repo_id,
            "alreadyInitialized": self.already,
        })
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.already {
            writeln!(
                out,
                "Repository already initialized at {} (repoId {}); nothing changed",
                self.repo_dir.display(),
                self.repo_id
            )
        } else {
            writeln!(
                out,
                "Initialized swamp repository at {} (repoId {})",
                self.repo_dir.display(),
                self.repo_id
            )
        }
    }
}
