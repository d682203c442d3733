//! `--dry-run --list`: each entry a pass would change, with what would change, handed to
//! the caller as the walk finds it (the CLI prints one line, one NUL-terminated record or
//! one JSON object per entry). Only a dry run lists: the list is what an operator reads
//! before letting a pass write.

use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// One entry a pass would change. A field is `None` where that attribute stays as it is.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EntryChange {
    /// The entry's path, for people; never used to reach it.
    #[serde(serialize_with = "crate::walk::lossy::path")]
    pub path: PathBuf,
    /// The owner, from and to (`--owner`).
    pub uid: Option<FromTo<u32>>,
    /// The group, from and to.
    pub gid: Option<FromTo<u32>>,
    /// The permission bits (setuid, setgid and sticky included), from and to, in octal.
    pub mode: Option<FromTo<Mode>>,
    /// The SELinux label, from (`None`: no label) and to.
    pub label: Option<FromTo<Option<String>>>,
}

/// An attribute's value now and after the pass.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct FromTo<T> {
    /// The value now.
    pub from: T,
    /// The value the pass would write.
    pub to: T,
}

/// Permission bits, shown (and serialized) as four octal digits, e.g. `2770`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What would change, without the path: `uid 0 -> 1001, gid 0 -> 2000, mode 0644 -> 0664`.
impl fmt::Display for EntryChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut part = |f: &mut fmt::Formatter<'_>, what: fmt::Arguments<'_>| {
            let r = write!(f, "{sep}{what}");
            sep = ", ";
            r
        };
        if let Some(c) = self.uid {
            part(f, format_args!("uid {} -> {}", c.from, c.to))?;
        }
        if let Some(c) = self.gid {
            part(f, format_args!("gid {} -> {}", c.from, c.to))?;
        }
        if let Some(c) = self.mode {
            part(f, format_args!("mode {} -> {}", c.from, c.to))?;
        }
        if let Some(c) = &self.label {
            let from = c.from.as_deref().unwrap_or("(none)");
            let to = c.to.as_deref().unwrap_or("(none)");
            part(f, format_args!("label {from} -> {to}"))?;
        }
        Ok(())
    }
}

/// Where a dry run hands each entry it would change. Called from the walker threads, in
/// walk order.
#[derive(Clone)]
pub struct Listing(Arc<dyn Fn(EntryChange) + Send + Sync>);

impl Listing {
    /// A listing that hands each entry to `sink`.
    pub fn new(sink: impl Fn(EntryChange) + Send + Sync + 'static) -> Listing {
        Listing(Arc::new(sink))
    }

    pub(super) fn add(&self, change: EntryChange) {
        (self.0)(change)
    }
}

impl fmt::Debug for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Listing")
    }
}
