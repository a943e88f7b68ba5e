//! pmxcfs, the cluster file system at `/etc/pve`, holds the one desired-state file every
//! node reads (README): its cap on the size of one file, which `check` enforces.

use crate::desired::DesiredError;
use std::path::Path;

/// The most pmxcfs holds in one file: pve-cluster `src/pmxcfs/memdb.h`
/// (`MEMDB_MAX_FILE_SIZE`, 1 MiB); a write past it fails with `EFBIG`
/// (`src/pmxcfs/memdb.c`, `memdb_write`).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Where pmxcfs, the cluster file system, is mounted.
const ROOT: &str = "/etc/pve";

/// Refuses a desired-state file under `/etc/pve` (or a link to one there) that has
/// reached pmxcfs's cap on one file. Each write that would end past the cap fails, and
/// the writes before it stay, so a file at the cap is most likely a longer one cut off
/// (inferred from `memdb_write`); it then fails to parse, and this says why, before the
/// parser does. Exactly 1 MiB of valid JSON is refused too: it leaves no room to grow.
/// A path that cannot be read is left to the loader.
pub fn check_size(path: &Path) -> Result<(), DesiredError> {
    check_size_under(path, Path::new(ROOT))
}

fn check_size_under(path: &Path, root: &Path) -> Result<(), DesiredError> {
    let under =
        path.starts_with(root) || std::fs::canonicalize(path).is_ok_and(|p| p.starts_with(root));
    let len = match std::fs::metadata(path) {
        Ok(meta) if under => meta.len(),
        _ => return Ok(()),
    };
    if len < MAX_FILE_BYTES {
        return Ok(());
    }
    Err(DesiredError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it is {len} bytes, and pmxcfs (the cluster file system at {}) holds at most \
                 {MAX_FILE_BYTES} bytes (1 MiB) in one file: a longer write fails part \
                 way, so this copy is most likely cut off; keep the desired state under 1 MiB",
                root.display()
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("felhom-cluster-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pve/felhom")).unwrap();
        dir
    }

    #[test]
    fn a_desired_file_at_pmxcfs_cap_is_refused_only_under_its_mount() {
        let dir = temp_dir("size");
        let root = dir.join("pve");
        let write = |path: &Path, len: u64| {
            std::fs::write(path, vec![b' '; len as usize]).unwrap();
            path.to_path_buf()
        };
        let under = write(&root.join("felhom/desired.json"), MAX_FILE_BYTES - 1);
        assert!(check_size_under(&under, &root).is_ok());
        write(&under, MAX_FILE_BYTES);
        let e = check_size_under(&under, &root).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "cannot read desired state file {}: it is 1048576 bytes, and pmxcfs (the \
                 cluster file system at {}) holds at most 1048576 bytes (1 MiB) in one file: a \
                 longer write fails part way, so this copy is most likely cut off; keep the \
                 desired state under 1 MiB",
                under.display(),
                root.display()
            )
        );
        write(&under, MAX_FILE_BYTES + 10);
        assert!(check_size_under(&under, &root).is_err());
        // Through a symbolic link from elsewhere, too.
        let link = dir.join("desired.json");
        std::os::unix::fs::symlink(&under, &link).unwrap();
        assert!(check_size_under(&link, &root).is_err());
        // Outside pmxcfs a large file is the loader's business; a missing one too.
        let outside = write(&dir.join("big.json"), MAX_FILE_BYTES + 10);
        assert!(check_size_under(&outside, &root).is_ok());
        assert!(check_size_under(&root.join("felhom/none.json"), &root).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
