//! The `--state` file: the guests as JSON, loaded at start and rewritten after every
//! change (temp file + rename, so a reader never sees half a file).
//!
//! Format: `{"version":1,"guests":[<SimGuest>...]}`, each guest with the field names of
//! [`SimGuest`]; missing fields take [`SimGuest::new`]'s values. No fsync: this is a
//! development tool, and losing the last change on a power cut is acceptable.

use super::model::SimGuest;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::Path;

#[derive(Serialize)]
struct FileOut<'a> {
    version: u32,
    guests: &'a [&'a SimGuest],
}

#[derive(Deserialize)]
struct FileIn {
    version: u32,
    guests: Vec<SimGuest>,
}

/// The guests in `path`, or `None` when the file does not exist.
pub(crate) fn load(path: &Path) -> io::Result<Option<Vec<SimGuest>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot read state file {}: {e}", path.display()),
            ))
        }
    };
    let file: FileIn = serde_json::from_str(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad state file {}: {e}", path.display()),
        )
    })?;
    if file.version != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "state file {} has unknown version {}",
                path.display(),
                file.version
            ),
        ));
    }
    Ok(Some(file.guests))
}

/// Writes the guests to `path` through a temporary file in the same directory.
pub(crate) fn save(path: &Path, guests: &[&SimGuest]) -> io::Result<()> {
    let text = serde_json::to_string_pretty(&FileOut { version: 1, guests })
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("felhom-sim-persist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        assert!(load(&path).unwrap().is_none());
        let mut g = SimGuest::new(101, "pve1");
        g.tags = Some("a;b".into());
        save(&path, &[&g]).unwrap();
        assert_eq!(load(&path).unwrap().unwrap(), vec![g]);
        std::fs::write(
            &path,
            r#"{"version":1,"guests":[{"vmid":105,"status":"running"}]}"#,
        )
        .unwrap();
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(loaded[0].vmid, 105);
        assert_eq!(loaded[0].memory, Some(512));
        std::fs::write(&path, "nope").unwrap();
        assert!(load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
