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

/// `O_NONBLOCK` on Linux (x86_64, aarch64 and most other architectures; the agent only
/// runs on Linux). std has no constant for it and the crate does without libc.
const O_NONBLOCK: i32 = 0o4000;

/// Opens a file an operator named for reading, refusing at once what is not a regular
/// file (see [`read_regular`]); returns it with its metadata, taken from the handle.
pub fn open_regular(path: &Path) -> io::Result<(File, fs::Metadata)> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file: name a regular file"),
        ));
    }
    Ok((file, meta))
}

/// Reads a file an operator named (a config, a desired state, a secret), refusing what
/// is not a regular file or is larger than `max` bytes, without ever blocking on it: a
/// FIFO, a device such as `/dev/zero` or a directory named by mistake gets a clear error
/// at once. The file is opened non-blocking (opening a FIFO for reading otherwise waits
/// for a writer) and checked on the open handle, so the file checked is the file read.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let (file, meta) = open_regular(path)?;
    let too_large = |size: u64| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "it is larger than the {max} bytes allowed ({size} bytes): is it the right file?"
            ),
        )
    };
    if meta.len() > max {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
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

    #[test]
    fn read_regular_refuses_what_is_not_a_small_regular_file() {
        let dir = std::env::temp_dir().join(format!("felhom-fsutil-read-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok.json");
        fs::write(&ok, "{}").unwrap();
        assert_eq!(read_regular(&ok, 10).unwrap(), b"{}");
        let big = dir.join("big.json");
        fs::write(&big, vec![b' '; 11]).unwrap();
        let e = read_regular(&big, 10).unwrap_err().to_string();
        assert!(
            e.contains("larger than the 10 bytes allowed (11 bytes)"),
            "{e}"
        );
        let e = read_regular(&dir, 10).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        let e = read_regular(Path::new("/dev/zero"), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a device"), "{e}");
        // A FIFO with no writer: opening it would block without O_NONBLOCK.
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo (coreutils) runs");
        let e = read_regular(&fifo, 10).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
