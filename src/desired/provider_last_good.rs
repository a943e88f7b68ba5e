//! `<state_dir>/desired-last-good.json`: the last desired state a remote source gave,
//! with its validators and times, so that a restart while the source is down converges
//! to the last good state it knew, and so that the first request after a restart can
//! already be conditional.
//!
//! The file is JSON, written atomically (temp file, fsync, rename, directory fsync) by
//! the process holding the state directory's lock, after every good answer and every
//! confirmation:
//!
//! ```json
//! {"version": 1, "url": "https://cp.example.com/nodes/pve1.json",
//!  "url_id": "9b2f0c1e7d3a5f41", "etag": "\"5f1c\"", "last_modified": null,
//!  "fetched": "2026-11-27T10:00:00Z", "confirmed": "2026-11-27T10:30:00Z",
//!  "document": "{\"guests\": [...]}"}
//! ```
//!
//! `url` is the URL as shown (no query); `url_id` tells the full URL apart (an FNV-1a
//! hash, so that a query is never written out). `document` is the text as fetched; it
//! is validated again when read, so a file damaged or edited by hand is never acted on:
//! it is ignored with a warning, as if there were none.

use super::DesiredState;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// The file's format version.
const VERSION: u32 = 1;

/// The file in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("desired-last-good.json")
}

/// The last good state and what goes with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LastGood {
    pub url_id: String,
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Unix seconds.
    pub fetched: i64,
    pub confirmed: i64,
    pub document: String,
    /// `document`, validated.
    pub state: DesiredState,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    url: String,
    url_id: String,
    etag: Option<String>,
    last_modified: Option<String>,
    fetched: String,
    confirmed: String,
    document: String,
}

/// The id of a full URL: FNV-1a, 64 bit, in hex.
pub(crate) fn url_id(full: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in full.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Writes `last` atomically.
pub(crate) fn write(path: &Path, last: &LastGood) -> io::Result<()> {
    let disk = OnDisk {
        version: VERSION,
        url: last.url.clone(),
        url_id: last.url_id.clone(),
        etag: last.etag.clone(),
        last_modified: last.last_modified.clone(),
        fetched: crate::time::rfc3339(last.fetched),
        confirmed: crate::time::rfc3339(last.confirmed),
        document: last.document.clone(),
    };
    let text = serde_json::to_string(&disk).expect("plain data serializes") + "\n";
    crate::fsutil::write_atomic(path, text)
}

/// Reads the file: `Ok(None)` when there is none, `Err` (a message for a warning) when
/// it cannot be used.
pub(crate) fn read(path: &Path) -> Result<Option<LastGood>, String> {
    let bytes = match crate::fsutil::read_regular(path, super::MAX_FILE_BYTES * 2) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let disk: OnDisk = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a last good state file: {e}", path.display()))?;
    if disk.version != VERSION {
        return Err(format!(
            "{} has format version {}, this agent knows {VERSION}",
            path.display(),
            disk.version
        ));
    }
    let time = |s: &str| {
        crate::time::parse_rfc3339(s)
            .ok_or_else(|| format!("{}: {s:?} is not an RFC 3339 time", path.display()))
    };
    let (fetched, confirmed) = (time(&disk.fetched)?, time(&disk.confirmed)?);
    let state = DesiredState::parse(&disk.document, path).map_err(|e| e.to_string())?;
    Ok(Some(LastGood {
        url_id: disk.url_id,
        url: disk.url,
        etag: disk.etag,
        last_modified: disk.last_modified,
        fetched,
        confirmed,
        document: disk.document,
        state,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_and_read_back_and_damage_is_refused() {
        let dir = std::env::temp_dir().join(format!("felhom-last-good-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = path(&dir);
        assert_eq!(read(&file), Ok(None));
        let document = r#"{"guests": [{"vmid": 101, "state": "running"}]}"#.to_string();
        let last = LastGood {
            url_id: url_id("https://cp/d.json?ref=main"),
            url: "https://cp/d.json?...".into(),
            etag: Some("W/\"abc\"".into()),
            last_modified: None,
            fetched: 1_700_000_000,
            confirmed: 1_700_000_300,
            state: DesiredState::parse(&document, Path::new("x")).unwrap(),
            document,
        };
        write(&file, &last).unwrap();
        assert_eq!(read(&file), Ok(Some(last.clone())));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("ref=main"), "{text}");
        assert_ne!(
            url_id("https://cp/d.json?ref=main"),
            url_id("https://cp/d.json")
        );

        // A document edited into something invalid is not used.
        let bad = text.replace("running", "runnin");
        std::fs::write(&file, bad).unwrap();
        let e = read(&file).unwrap_err();
        assert!(e.contains("state: expected"), "{e}");
        std::fs::write(&file, &text[..text.len() / 2]).unwrap();
        assert!(read(&file)
            .unwrap_err()
            .contains("is not a last good state file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
