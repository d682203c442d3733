//! Extended attributes of an entry, never through a symlink.
//!
//! `getxattrat`/`setxattrat` (Linux 6.13) take `AT_SYMLINK_NOFOLLOW` relative to a directory
//! descriptor. Before that, the entry is pinned with `O_PATH | O_NOFOLLOW` and reached as
//! `/proc/self/fd/N` (a symlink pinned this way is itself what the path names; `lsetxattr`
//! on that path would act on the magic link and fails).

use super::fallback::{
    native, pin, settle, through_proc, xattrat_flag, SYS_GETXATTRAT, SYS_SETXATTRAT,
};
use super::Target;
use rustix::fd::{AsRawFd, BorrowedFd};
use std::ffi::CStr;
use std::io;

/// `struct xattr_args` of the `*xattrat` calls.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// Reads the attribute `attr` of `target` into `buf`, returning its length.
pub fn get_xattr(target: Target<'_>, attr: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    match target {
        Target::Fd(fd) => rustix::fs::fgetxattr(fd, attr, buf).map_err(io::Error::from),
        // fgetxattr fails on an O_PATH descriptor; its /proc/self/fd path does not.
        Target::Pinned(fd) => through_proc(&fd, |path| rustix::fs::getxattr(path, attr, &mut *buf)),
        Target::At(dir, name) => {
            if native(xattrat_flag()) {
                let mut args = XattrArgs {
                    value: buf.as_mut_ptr() as u64,
                    size: buf.len() as u32,
                    flags: 0,
                };
                let res = xattrat(SYS_GETXATTRAT, dir, name, attr, &mut args);
                if let Some(res) = settle(xattrat_flag(), res) {
                    return res;
                }
            }
            let pinned = pin(dir, name)?;
            through_proc(&pinned, |path| rustix::fs::getxattr(path, attr, buf))
        }
    }
}

/// Writes the attribute `attr` of `target`.
pub fn set_xattr(target: Target<'_>, attr: &CStr, value: &[u8]) -> io::Result<()> {
    use rustix::fs::XattrFlags;
    match target {
        Target::Fd(fd) => {
            rustix::fs::fsetxattr(fd, attr, value, XattrFlags::empty()).map_err(io::Error::from)
        }
        Target::Pinned(fd) => through_proc(&fd, |path| {
            rustix::fs::setxattr(path, attr, value, XattrFlags::empty())
        }),
        Target::At(dir, name) => {
            if native(xattrat_flag()) {
                let mut args = XattrArgs {
                    value: value.as_ptr() as u64,
                    size: value.len() as u32,
                    flags: 0,
                };
                let res = xattrat(SYS_SETXATTRAT, dir, name, attr, &mut args).map(drop);
                if let Some(res) = settle(xattrat_flag(), res) {
                    return res;
                }
            }
            let pinned = pin(dir, name)?;
            through_proc(&pinned, |path| {
                rustix::fs::setxattr(path, attr, value, XattrFlags::empty())
            })
        }
    }
}

fn xattrat(
    nr: libc::c_long,
    dir: BorrowedFd<'_>,
    name: &CStr,
    attr: &CStr,
    args: &mut XattrArgs,
) -> io::Result<usize> {
    // SAFETY: valid fd, NUL-terminated strings, and `args` points at a live `xattr_args`
    // whose buffer is valid for `size` bytes.
    let ret = unsafe {
        libc::syscall(
            nr,
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
            attr.as_ptr(),
            args as *mut XattrArgs,
            std::mem::size_of::<XattrArgs>(),
        )
    };
    super::cvt(ret).map(|n| n as usize)
}
