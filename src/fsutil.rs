//! Small filesystem helpers shared by the modules that keep files on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Replaces the file at `path` with `data` so that a reader (or a crash) sees either
/// the old contents or the new ones, never a mix.
///
/// The data goes to `.<name>.tmp` beside `path`, which is fsynced and then renamed
/// over `path`; last, the directory is fsynced so the rename itself survives a power
/// loss. The temporary name starts with a dot and ends in `.tmp`, so the node
/// exporter's textfile collector (which reads `*.prom`) never picks it up.
///
/// One writer per `path` at a time: two concurrent writers would share the
/// temporary file. A temporary file left by a crash is overwritten by the next write.
/// A new file gets the usual `0666 & !umask` mode; an existing one is replaced, and
/// so its mode is not kept.
pub fn write_atomic(path: &Path, data: impl AsRef<[u8]>) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);

    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(data.as_ref())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Best effort: the error that matters is `e`, not a failed clean-up.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("felhom-fsutil-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_and_replaces_leaving_no_temp_file() {
        let dir = temp_dir("replace");
        let path = dir.join("felhom.prom");
        write_atomic(&path, "first\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "first\n");
        write_atomic(&path, b"second, longer\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second, longer\n");
        assert_eq!(names(&dir), ["felhom.prom"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temp_file_is_overwritten() {
        let dir = temp_dir("stale");
        fs::write(dir.join(".status.json.tmp"), "half a write from a crash").unwrap();
        write_atomic(&dir.join("status.json"), "{}").unwrap();
        assert_eq!(names(&dir), ["status.json"]);
        assert_eq!(fs::read_to_string(dir.join("status.json")).unwrap(), "{}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_are_errors_and_leave_nothing_behind() {
        let dir = temp_dir("fail");
        // The target is a non-empty directory, so the rename fails after the temp
        // file was written; the temp file must be gone afterwards.
        fs::create_dir_all(dir.join("taken").join("inner")).unwrap();
        assert!(write_atomic(&dir.join("taken"), "x").is_err());
        assert_eq!(names(&dir), ["taken"]);
        assert!(write_atomic(&dir.join("missing").join("f"), "x").is_err());
        assert_eq!(
            write_atomic(Path::new("/"), "x").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
