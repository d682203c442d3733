//! What the node says about SELinux: is it enabled, does a mount carry labels, and what is
//! the kernel's own spelling of a context.
//!
//! These facts decide between a `-o context=` mount and a relabel, and make sure the label
//! volsec compares against is the one the kernel will hand back. They come from the kernel's
//! own interfaces (`/proc/self/mountinfo`, selinuxfs), never from configuration files that
//! may disagree with the running kernel.

use super::context::{Context, ParseContextError};
pub use crate::sys::{mounts, parse_mountinfo, MountInfo};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where selinuxfs is mounted, if it is.
pub fn selinuxfs_mount(mounts: &[MountInfo]) -> Option<&Path> {
    mounts
        .iter()
        .find(|m| m.fs_type == "selinuxfs")
        .map(|m| m.mount_point.as_path())
}

/// SELinux is enabled on the node: selinuxfs is mounted (as go-selinux and libselinux
/// decide it).
pub fn selinux_enabled() -> bool {
    mounts().is_ok_and(|m| selinuxfs_mount(&m).is_some())
}

/// Whether the mount with id `mount_id` (statx `stx_mnt_id`, [`crate::sys::Stat::mnt_id`])
/// carries `seclabel`; `None` when no such mount is listed.
pub fn mount_has_seclabel(mounts: &[MountInfo], mount_id: u64) -> Option<bool> {
    mounts
        .iter()
        .find(|m| m.mount_id == mount_id)
        .map(MountInfo::has_seclabel)
}

/// Why the kernel refused or could not check a context.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The loaded policy does not know the context (`EINVAL` from selinuxfs).
    #[error("SELinux context {context:?} is not valid in the loaded policy (the kernel refused it through {path})")]
    InvalidInPolicy {
        /// The context as given.
        context: String,
        /// The selinuxfs `context` file that was asked.
        path: PathBuf,
    },
    /// selinuxfs could not be asked.
    #[error("{path}: cannot check SELinux context {context:?}: {source}")]
    Io {
        /// The context as given.
        context: String,
        /// The selinuxfs `context` file that was asked.
        path: PathBuf,
        /// What the kernel answered.
        source: io::Error,
    },
    /// The kernel's canonical form of the context does not parse.
    #[error("{path}: the kernel returned a context volsec cannot read: {source}")]
    Unreadable {
        /// The selinuxfs `context` file that answered.
        path: PathBuf,
        /// Why its answer does not parse.
        source: ParseContextError,
    },
}

/// When SELinux is enabled, validates `ctx` against the loaded policy and returns the
/// kernel's canonical form of it (which is what a relabelled file will read back);
/// otherwise returns `ctx` unchanged.
pub fn resolve_label(ctx: Context) -> Result<Context, NodeError> {
    let mounts = mounts().unwrap_or_default();
    match selinuxfs_mount(&mounts) {
        Some(selinuxfs) => canonicalize(&selinuxfs.join("context"), &ctx),
        None => Ok(ctx),
    }
}

/// Writes `ctx` to a selinuxfs `context` file and reads back the canonical form, as
/// libselinux's `security_canonicalize_context` does (the written text ends with a NUL,
/// the answer too).
pub fn canonicalize(context_file: &Path, ctx: &Context) -> Result<Context, NodeError> {
    let text = ctx.to_string();
    let io_err = |source: io::Error| NodeError::Io {
        context: text.clone(),
        path: context_file.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(context_file)
        .map_err(io_err)?;
    let mut request = text.clone().into_bytes();
    request.push(0);
    match file.write(&request) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Err(NodeError::InvalidInPolicy {
                context: text,
                path: context_file.to_path_buf(),
            })
        }
        Err(e) => return Err(io_err(e)),
    }
    // The answer is read from offset 0: a transaction file keeps it there (at most a page).
    let mut answer = vec![0u8; 4096];
    let len = file.read_at(&mut answer, 0).map_err(io_err)?;
    let answer = &answer[..len];
    let answer = answer.strip_suffix(b"\0").unwrap_or(answer);
    let answer = String::from_utf8_lossy(answer);
    Context::parse(&answer).map_err(|source| NodeError::Unreadable {
        path: context_file.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
25 23 0:23 / /sys/fs/selinux rw,relatime - selinuxfs selinuxfs rw
30 27 253:0 / / rw,relatime shared:1 - xfs /dev/mapper/root rw,seclabel,attr2,inode64
41 30 0:40 / /var/lib/kubelet/pods/a\\040b/volumes rw,relatime - tmpfs tmpfs rw,seclabel,size=1024k
42 30 8:1 / /boot/efi rw,relatime shared:2 master:1 - vfat /dev/sda1 rw,fmask=0077
garbage line
";

    #[test]
    fn mountinfo_is_parsed() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts.len(), 5);
        assert_eq!(selinuxfs_mount(&mounts), Some(Path::new("/sys/fs/selinux")));
        assert_eq!(
            mounts[3].mount_point,
            Path::new("/var/lib/kubelet/pods/a b/volumes")
        );
        assert_eq!(mounts[4].fs_type, "vfat");
        assert_eq!(mount_has_seclabel(&mounts, 30), Some(true));
        assert_eq!(mount_has_seclabel(&mounts, 41), Some(true));
        assert_eq!(mount_has_seclabel(&mounts, 42), Some(false));
        assert_eq!(mount_has_seclabel(&mounts, 99), None);
    }

    #[test]
    fn no_selinuxfs_means_disabled() {
        let mounts = parse_mountinfo("22 27 0:21 / /proc rw - proc proc rw\n");
        assert_eq!(selinuxfs_mount(&mounts), None);
    }

    #[test]
    fn this_nodes_mounts_are_readable() {
        let mounts = mounts().expect("/proc/self/mountinfo is readable");
        assert!(mounts.iter().any(|m| m.mount_point == Path::new("/")));
    }

    #[test]
    fn resolve_is_the_identity_without_selinux() {
        if selinux_enabled() {
            return; // the kernel check is exercised by canonicalize_reads_the_answer_back
        }
        let ctx = Context::parse("system_u:object_r:container_file_t:s0:c2,c1").unwrap();
        assert_eq!(resolve_label(ctx.clone()).unwrap(), ctx);
    }

    #[test]
    fn canonicalize_reads_the_answer_back() {
        // A plain file stands in for selinuxfs' transaction file: it hands back what was
        // written, NUL included, which exercises the framing.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("context");
        std::fs::write(&file, b"").unwrap();
        let ctx = Context::parse("system_u:object_r:container_file_t:s0:c1,c2").unwrap();
        assert_eq!(canonicalize(&file, &ctx).unwrap(), ctx);
        let missing = dir.path().join("absent");
        let err = canonicalize(&missing, &ctx).unwrap_err().to_string();
        assert!(
            err.contains("absent") && err.contains("cannot check"),
            "{err}"
        );
    }
}
