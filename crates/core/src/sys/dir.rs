//! Reading a directory with `getdents64`, a buffer at a time.
//!
//! The reader keeps no state but the descriptor's own offset, so a directory of millions of
//! entries costs one buffer, and the walker can hand each buffer's worth of entries to
//! whichever thread is free.

use rustix::fd::BorrowedFd;
use std::ffi::CStr;
use std::io;

/// `d_type` as the filesystem reported it. `Unknown` (some filesystems never fill it in)
/// means the entry has to be `stat`ed to be classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryType {
    /// `DT_DIR`: walked into.
    Dir,
    /// `DT_LNK`: never followed.
    Symlink,
    /// Any other known type (file, device, pipe, socket).
    Other,
    /// `DT_UNKNOWN`: the filesystem did not say.
    Unknown,
}

/// One entry of a directory, borrowed from the reader's buffer.
#[derive(Debug)]
pub struct DirEntry<'a> {
    /// `d_ino`: the order in which the inodes lie on disk.
    pub ino: u64,
    /// `d_off`: the entry's place in the directory's listing (where reading goes on after
    /// it).
    pub off: u64,
    /// The entry's name inside the directory read (never `.` or `..`).
    pub name: &'a CStr,
    /// Its type as `d_type` reported it.
    pub kind: EntryType,
}

/// A buffer for `getdents64`. One per worker thread.
pub struct DirReader {
    buf: Vec<u8>,
    len: usize,
}

impl DirReader {
    /// A reader of `bytes`. The buffer is zeroed lazily by the allocator, so the pages a
    /// batch never reaches (a small directory's) are never made resident.
    pub fn with_capacity(bytes: usize) -> DirReader {
        DirReader {
            buf: vec![0; bytes],
            len: 0,
        }
    }

    /// Reads the next batch of entries of `dir`. Returns `false` at the end of the
    /// directory. `.` and `..` are filtered out by [`DirReader::entries`].
    pub fn fill(&mut self, dir: BorrowedFd<'_>) -> io::Result<bool> {
        use rustix::fd::AsRawFd;
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                self.buf.as_mut_ptr(),
                self.buf.len(),
            )
        };
        self.len = super::cvt(ret)? as usize;
        Ok(self.len > 0)
    }

    /// Goes back to the start of `dir`, to read it again.
    pub fn rewind(&mut self, dir: BorrowedFd<'_>) -> io::Result<()> {
        self.len = 0;
        rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0))?;
        Ok(())
    }

    /// Whether the last batch left room for more: a filesystem returns a short batch at the
    /// end of a directory, so a reader can skip asking again for small directories.
    pub fn was_short(&self) -> bool {
        self.len + 512 < self.buf.len()
    }

    /// The entries of the last batch, without `.` and `..`.
    pub fn entries(&self) -> impl Iterator<Item = DirEntry<'_>> {
        let buf = &self.buf[..self.len];
        let mut off = 0;
        std::iter::from_fn(move || loop {
            if off >= buf.len() {
                return None;
            }
            // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            let ino = u64::from_ne_bytes(buf[off..off + 8].try_into().expect("8 bytes"));
            let next = u64::from_ne_bytes(buf[off + 8..off + 16].try_into().expect("8 bytes"));
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            let d_type = buf[off + 18];
            let name = CStr::from_bytes_until_nul(&buf[off + 19..off + reclen]).ok()?;
            off += reclen;
            if name == c"." || name == c".." {
                continue;
            }
            let kind = match d_type {
                libc::DT_DIR => EntryType::Dir,
                libc::DT_LNK => EntryType::Symlink,
                libc::DT_UNKNOWN => EntryType::Unknown,
                _ => EntryType::Other,
            };
            return Some(DirEntry {
                ino,
                off: next,
                name,
                kind,
            });
        })
    }
}
