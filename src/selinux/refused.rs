//! Roots no pass may touch, compared by identity.

use crate::sys::Stat;

/// Why `root` must not be walked, if it is a refused system directory.
pub fn refused_root(root: &Stat) -> Option<String> {
    let st = std::fs::metadata("/").ok()?;
    use std::os::unix::fs::MetadataExt;
    (st.dev() == root.dev && st.ino() == root.ino).then(|| "/".to_string())
}
