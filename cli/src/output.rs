//! The files the CLI writes (`bench --json`, `calibrate --write`'s free.json). Each is checked
//! before the run does any work: it may not be one of the run's inputs (after symlinks:
//! `--json` naming the data set or the weights would replace them), and its folder must take
//! a new file. It is then written whole or not at all, into a temporary file beside it that
//! is renamed over it when complete: a failed or interrupted run leaves what was there, and
//! a symlink at the path is replaced, never written through.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use free_wasm::error::ModelFile;

pub struct Output {
    path: PathBuf,
}

/// What a run reads, by the name an error gives it: `--data` and the model folder's files.
pub fn inputs(model_dir: &Path, data: &Path) -> Vec<(String, PathBuf)> {
    let files = [ModelFile::Config, ModelFile::Weights, ModelFile::Tokenizer, ModelFile::FreeSettings];
    let model = files.map(|f| (format!("the model's {f}"), model_dir.join(f.file_name())));
    [("--data".to_string(), data.to_path_buf())].into_iter().chain(model).collect()
}

/// `path` with its folder and symlinks resolved, for comparing paths; None if its folder
/// does not exist.
fn resolved(path: &Path) -> Option<PathBuf> {
    fs::canonicalize(path).ok().or_else(|| {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Some(fs::canonicalize(folder).ok()?.join(path.file_name()?))
    })
}

impl Output {
    /// `path` as the output of a run that reads `inputs`; `what` names it in errors (the
    /// option that gave it).
    pub fn new(what: &str, path: PathBuf, inputs: &[(String, PathBuf)]) -> Result<Self, String> {
        let target = resolved(&path);
        if let Some((input, _)) = inputs.iter().find(|(_, p)| target.is_some() && resolved(p) == target) {
            return Err(format!("{what} {} is {input}, which this run reads: writing it would replace it; give another path", path.display()));
        }
        if path.is_dir() {
            return Err(format!("{what} {} is a folder; give a file path", path.display()));
        }
        let output = Output { path };
        // Found out now, not after the whole run.
        let temp = output.temp()?;
        fs::remove_file(temp).map_err(|e| output.cannot(e))?;
        Ok(output)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `bytes`, keeping its permissions.
    pub fn write(&self, bytes: &[u8]) -> Result<(), String> {
        let temp = self.temp()?;
        let written = fs::write(&temp, bytes).and_then(|()| match fs::metadata(&self.path) {
            Ok(old) => fs::set_permissions(&temp, old.permissions()),
            Err(_) => Ok(()),
        });
        match written.and_then(|()| fs::rename(&temp, &self.path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(self.cannot(e))
            }
        }
    }

    /// A new, empty temporary file beside the target (hidden, named after it and this
    /// process).
    fn temp(&self) -> Result<PathBuf, String> {
        let mut name = OsString::from(".");
        name.push(self.path.file_name().ok_or_else(|| format!("{} is not a file path", self.path.display()))?);
        name.push(format!(".{}.tmp", std::process::id()));
        let temp = self.path.with_file_name(name);
        // A leftover of an earlier process with this id; create_new never follows a symlink.
        let _ = fs::remove_file(&temp);
        OpenOptions::new().write(true).create_new(true).open(&temp).map_err(|e| self.cannot(e))?;
        Ok(temp)
    }

    fn cannot(&self, e: std::io::Error) -> String {
        format!("cannot write {}: {e}", self.path.display())
    }
}
