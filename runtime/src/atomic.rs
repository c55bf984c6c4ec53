//! Writing files so that no reader ever sees half of one: the bytes go to a temporary name
//! beside the destination, are synced, and are renamed into place; the directory is synced
//! so the rename survives a crash. Checkpoints, metrics files and plots all go through here.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A hidden temporary name in `path`'s directory that keeps its extension (plotting
/// back ends choose by it): `dir/.NAME.PID.tmp.EXT`.
pub fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp.{ext}", std::process::id()))
}

/// Moves a finished temporary file into place: sync it, rename it, sync the directory.
/// On failure the temporary file is removed.
pub fn commit(tmp: &Path, path: &Path) -> std::io::Result<()> {
    let result = (|| {
        File::open(tmp)?.sync_all()?;
        std::fs::rename(tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Best effort: some file systems refuse to sync a directory.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Writes `path` through `fill`, atomically.
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = temp_beside(path);
    let written = (|| {
        let mut f = BufWriter::new(File::create(&tmp)?);
        fill(&mut f)?;
        f.flush()
    })();
    match written {
        Ok(()) => commit(&tmp, path),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("anneal-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.txt");
        write_with(&path, |f| f.write_all(b"first")).unwrap();
        let err = write_with(&path, |f| {
            f.write_all(b"half")?;
            Err(std::io::Error::other("interrupted"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert!(!temp_beside(&path).exists());
        write_with(&path, |f| f.write_all(b"second")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
