//! The mount table, as the kernel lists it in `/proc/self/mountinfo`.
//!
//! Two questions need it: whether a mount carries SELinux labels (`seclabel`), and whether
//! anything is mounted below a volume's root, so a pass knows a plain file may be a mount
//! point (a bind mount) that must not be written through.

use std::io;
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`, the fields volsec needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The mount's id, as `statx`'s `STATX_MNT_ID` reports it.
    pub mount_id: u64,
    /// Where the mount is attached (octal escapes decoded).
    pub mount_point: PathBuf,
    /// The filesystem type, e.g. `ext4`, `tmpfs`, `nfs`.
    pub fs_type: String,
    /// The superblock options (the last field), e.g. `rw,seclabel,size=1024k`.
    pub super_options: Vec<String>,
}

impl MountInfo {
    /// Whether the filesystem stores per-file labels (`seclabel`, shown by the kernel only
    /// while SELinux is enabled).
    pub fn has_seclabel(&self) -> bool {
        self.super_options.iter().any(|o| o == "seclabel")
    }
}

/// Parses the text of `/proc/<pid>/mountinfo`; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let (before, after) = line.split_once(" - ")?;
    let mut before = before.split(' ');
    let mount_id = before.next()?.parse().ok()?;
    let mount_point = unescape(before.nth(3)?);
    let mut after = after.split(' ');
    let fs_type = after.next()?.to_string();
    let super_options = after.nth(1)?.split(',').map(str::to_string).collect();
    Some(MountInfo {
        mount_id,
        mount_point: PathBuf::from(mount_point),
        fs_type,
        super_options,
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// This process's mounts.
pub fn mounts() -> io::Result<Vec<MountInfo>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// Whether anything is mounted strictly below `dir` (an absolute path), by the mount table.
/// A table that cannot be read answers yes: the caller then checks every entry.
pub fn mounts_below(dir: &Path) -> bool {
    below(mounts(), dir)
}

/// [`mounts_below`] by the calling thread's own mount table (`/proc/thread-self`), which
/// differs from the process's after [`super::in_private_mounts`].
pub fn thread_mounts_below(dir: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/thread-self/mountinfo");
    below(table.map(|t| parse_mountinfo(&t)), dir)
}

fn below(table: io::Result<Vec<MountInfo>>, dir: &Path) -> bool {
    let Ok(table) = table else {
        return true;
    };
    table
        .iter()
        .any(|m| m.mount_point != dir && m.mount_point.starts_with(dir))
}
