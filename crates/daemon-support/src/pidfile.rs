//! A pid file that is removed again when the daemon stops.

use std::path::{Path, PathBuf};

/// Holds a written pid file; dropping it removes the file, unless another process has written
/// its own pid there since (a second instance started meanwhile keeps its file).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: String,
}

impl PidFile {
    /// Writes the current process id to `path`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let pid = std::process::id().to_string();
        std::fs::write(&path, format!("{pid}\n"))?;
        Ok(Self { path, pid })
    }

    /// Where the file was written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path).is_ok_and(|text| text.trim() == self.pid);
        if !ours {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove pid file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        let pid = PidFile::create(&path).unwrap();
        let text = std::fs::read_to_string(pid.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        drop(pid);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_rewritten_by_another_process_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        let pid = PidFile::create(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        drop(pid);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
    }
}
