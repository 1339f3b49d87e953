//! File writes that never leave a partial file at the destination.
//!
//! NOTE: a process killed during a write leaves its hidden `.NAME.PID.tmp` file next to the
//! destination; nothing removes it later.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `bytes` to a temporary file next to `path`, syncs it, and renames it over `path`.
/// On any error the temporary file is removed and `path` is untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    // Renaming over a device, pipe or symlink would replace it with a regular file.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_file() {
            return Err(Error::invalid_argument(
                "output path",
                format!("{} exists and is not a regular file (a directory, device, pipe or symlink); choose a file path", path.display()),
            ));
        }
    }
    let tmp = temporary_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Returns `dir/.name.<pid>.tmp` for `dir/name`.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Rejects an output path that is the input file, unless `force` is set.
pub fn check_output_path(input: &Path, output: &Path, force: bool) -> Result<()> {
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same && !force {
        return Err(Error::invalid_argument(
            "output path",
            format!(
                "{} is the input file; choose another path, or pass --force to overwrite it",
                output.display()
            ),
        ));
    }
    Ok(())
}
