//! A pid file that is removed again when the daemon stops.

use std::path::{Path, PathBuf};

/// Holds a written pid file; dropping it removes the file.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes the current process id to `path`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        std::fs::write(&path, format!("{}\n", std::process::id()))?;
        Ok(Self { path })
    }

    /// Where the file was written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
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
}
