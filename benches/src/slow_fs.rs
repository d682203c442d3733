//! A slow volume on demand: a FUSE passthrough of a local directory that answers every
//! request only after a fixed latency, and answers many requests at once.
//!
//! On a network filesystem (NFS, EFS, SMB, CephFS, a FUSE mount of an object store) each
//! metadata call is a round trip of 0.2 to 2 ms while the CPU waits; what a pass then costs
//! is decided by how many calls it keeps in flight, not by the CPU. This bed stands in for
//! such a volume on one machine: `volsec bench run --fs slow:500us` builds the trees in a
//! fresh tmpfs and measures every pass through this filesystem mounted over it.
//!
//! Built on the `fuser` crate (the kernel protocol, the mount through `fusermount3`). Every
//! request is answered by a job queued with its deadline (arrival + latency); a few
//! executor threads run the jobs in deadline order, so the number of requests waiting out
//! their latency at once is not bounded by threads (hundreds are in flight when the client
//! sends hundreds), as on a server that serves requests concurrently. Entries and attributes
//! are cached by the kernel for no time at all (`noac`-like): every lookup, every stat is a
//! round trip, as on a volume whose client cannot trust its cache.
//!
//! Each node is held by an `O_PATH | O_NOFOLLOW` descriptor of the backing entry; calls
//! that need more go through that descriptor's `/proc/self/fd` link, never through a path of
//! the backing directory, so the passthrough never follows a symlink the tree holds.

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags};
use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Threads reading requests from the kernel (each with its own cloned `/dev/fuse`).
const READERS: usize = 4;
/// Threads running the answers once their latency has passed.
const EXECUTORS: usize = 8;
/// How long the kernel may trust an entry or attribute: not at all.
const TTL: Duration = Duration::ZERO;

/// Parses a latency as `--fs slow:LATENCY` gives it: `500us`, `2ms`, `1s`, `250000ns`.
pub fn parse_latency(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("{s:?}: a latency needs a unit (ns, us, ms or s)"))?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: not a number followed by a unit"))?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ns, us, ms or s)")),
    };
    let secs = value * scale;
    if !(0.0..=10.0).contains(&secs) {
        return Err(format!("{s:?}: a latency from 0 to 10 s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `500us`, `2ms`: a latency as [`parse_latency`] reads it.
pub fn latency_name(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns % 1_000_000_000 == 0 && ns > 0 {
        format!("{}s", ns / 1_000_000_000)
    } else if ns % 1_000_000 == 0 && ns > 0 {
        format!("{}ms", ns / 1_000_000)
    } else if ns % 1_000 == 0 {
        format!("{}us", ns / 1_000)
    } else {
        format!("{ns}ns")
    }
}

/// The answers waiting out their latency, in deadline order (one latency for all, so
/// arrival order is deadline order).
struct Delay {
    latency: Duration,
    state: Mutex<DelayState>,
    ready: Condvar,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct DelayState {
    jobs: VecDeque<(Instant, Job)>,
    stopped: bool,
}

impl Delay {
    fn later(&self, job: impl FnOnce() + Send + 'static) {
        let due = Instant::now() + self.latency;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.jobs.push_back((due, Box::new(job)));
        drop(state);
        self.ready.notify_one();
    }

    /// One executor: takes the earliest job, waits for its deadline, runs it.
    fn execute(&self) {
        loop {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let (due, job) = loop {
                if let Some(next) = state.jobs.pop_front() {
                    break next;
                }
                if state.stopped {
                    return;
                }
                state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            };
            drop(state);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            job();
        }
    }

    /// Runs what is queued without waiting, then ends the executors.
    fn stop(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.stopped = true;
        drop(state);
        self.ready.notify_all();
    }
}

/// One entry of the backing directory the kernel knows by its node id.
struct Node {
    fd: Arc<OwnedFd>,
    lookups: u64,
}

enum Handle {
    File(Arc<std::fs::File>),
    Dir(Arc<Vec<(u64, FileType, OsString)>>),
}

/// The passthrough itself: node ids to backing descriptors, open handles.
struct Inner {
    nodes: Mutex<HashMap<u64, Node>>,
    handles: Mutex<(u64, HashMap<u64, Handle>)>,
    /// The backing root's inode number, which is exchanged with 1 (FUSE's root id).
    root_ino: u64,
}

type Res<T> = Result<T, Errno>;

fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_i32(e.raw_os_error())
}

fn io_errno(e: io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

/// `/proc/self/fd/N` of a node's descriptor: reaches the entry itself, never follows it.
fn proc_path(fd: &OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        SystemTime::UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs())
    }
}

fn timespec(t: Option<TimeOrNow>) -> rustix::fs::Timespec {
    match t {
        None => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => {
            let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            rustix::fs::Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: d.subsec_nanos().into(),
            }
        }
    }
}

impl Inner {
    /// Node id of a backing inode number (the backing root and 1 exchanged).
    fn id_of(&self, ino: u64) -> u64 {
        if ino == self.root_ino {
            1
        } else if ino == 1 {
            self.root_ino
        } else {
            ino
        }
    }

    fn fd(&self, id: INodeNo) -> Res<Arc<OwnedFd>> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes
            .get(&id.0)
            .map(|n| n.fd.clone())
            .ok_or(Errno::from_i32(libc::ESTALE))
    }

    fn attr_of(&self, fd: &OwnedFd) -> Res<FileAttr> {
        let st = rustix::fs::statat(fd, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno)?;
        Ok(FileAttr {
            ino: INodeNo(self.id_of(st.st_ino)),
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: time(st.st_atime, st.st_atime_nsec as i64),
            mtime: time(st.st_mtime, st.st_mtime_nsec as i64),
            ctime: time(st.st_ctime, st.st_ctime_nsec as i64),
            crtime: SystemTime::UNIX_EPOCH,
            kind: kind_of(st.st_mode),
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: st.st_blksize as u32,
            flags: 0,
        })
    }

    /// Finds `name` in `parent`, remembers it (one more lookup) and returns its attributes.
    fn lookup(&self, parent: INodeNo, name: &OsStr) -> Res<FileAttr> {
        let dir = self.fd(parent)?;
        let fd = rustix::fs::openat(
            &*dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let attr = self.attr_of(&fd)?;
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes
            .entry(attr.ino.0)
            .or_insert_with(|| Node {
                fd: Arc::new(fd),
                lookups: 0,
            })
            .lookups += 1;
        Ok(attr)
    }

    fn forget(&self, id: u64, n: u64) {
        if id == 1 {
            return;
        }
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(node) = nodes.get_mut(&id) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                nodes.remove(&id);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        id: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> Res<FileAttr> {
        let fd = self.fd(id)?;
        if uid.is_some() || gid.is_some() {
            rustix::fs::chownat(
                &*fd,
                "",
                uid.map(rustix::fs::Uid::from_raw),
                gid.map(rustix::fs::Gid::from_raw),
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(errno)?;
        }
        if let Some(mode) = mode {
            rustix::fs::chmod(proc_path(&fd), Mode::from_raw_mode(mode & 0o7777)).map_err(errno)?;
        }
        if let Some(size) = size {
            std::fs::OpenOptions::new()
                .write(true)
                .open(proc_path(&fd))
                .and_then(|f| f.set_len(size))
                .map_err(io_errno)?;
        }
        if atime.is_some() || mtime.is_some() {
            let times = rustix::fs::Timestamps {
                last_access: timespec(atime),
                last_modification: timespec(mtime),
            };
            rustix::fs::utimensat(rustix::fs::CWD, proc_path(&fd), &times, AtFlags::empty())
                .map_err(errno)?;
        }
        self.attr_of(&fd)
    }

    fn add_handle(&self, h: Handle) -> FileHandle {
        let mut handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        handles.0 += 1;
        let fh = handles.0;
        handles.1.insert(fh, h);
        FileHandle(fh)
    }

    fn file(&self, fh: FileHandle) -> Res<Arc<std::fs::File>> {
        let handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        match handles.1.get(&fh.0) {
            Some(Handle::File(f)) => Ok(f.clone()),
            _ => Err(Errno::from_i32(libc::EBADF)),
        }
    }

    fn release(&self, fh: FileHandle) {
        let mut handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        handles.1.remove(&fh.0);
    }

    fn open_file(&self, id: INodeNo, flags: i32) -> Res<FileHandle> {
        let fd = self.fd(id)?;
        let flags = OFlags::from_bits_retain(flags as u32)
            & !(OFlags::CREATE | OFlags::EXCL | OFlags::NOCTTY);
        let file = rustix::fs::open(proc_path(&fd), flags | OFlags::CLOEXEC, Mode::empty())
            .map_err(errno)?;
        Ok(self.add_handle(Handle::File(Arc::new(std::fs::File::from(file)))))
    }

    fn open_dir(&self, id: INodeNo) -> Res<FileHandle> {
        let fd = self.fd(id)?;
        let dir = rustix::fs::openat(
            &*fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let mut entries = Vec::new();
        let reader = rustix::fs::Dir::read_from(&dir).map_err(errno)?;
        for e in reader {
            let e = e.map_err(errno)?;
            let kind = match e.file_type() {
                rustix::fs::FileType::Directory => FileType::Directory,
                rustix::fs::FileType::Symlink => FileType::Symlink,
                rustix::fs::FileType::Fifo => FileType::NamedPipe,
                rustix::fs::FileType::CharacterDevice => FileType::CharDevice,
                rustix::fs::FileType::BlockDevice => FileType::BlockDevice,
                rustix::fs::FileType::Socket => FileType::Socket,
                _ => FileType::RegularFile,
            };
            entries.push((
                self.id_of(e.ino()),
                kind,
                OsStr::from_bytes(e.file_name().to_bytes()).to_owned(),
            ));
        }
        Ok(self.add_handle(Handle::Dir(Arc::new(entries))))
    }

    fn dir(&self, fh: FileHandle) -> Res<Arc<Vec<(u64, FileType, OsString)>>> {
        let handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        match handles.1.get(&fh.0) {
            Some(Handle::Dir(d)) => Ok(d.clone()),
            _ => Err(Errno::from_i32(libc::EBADF)),
        }
    }

    fn getxattr(&self, id: INodeNo, name: &OsStr, size: u32) -> Res<Vec<u8>> {
        let fd = self.fd(id)?;
        let mut buf = vec![0u8; if size == 0 { 65536 } else { size as usize }];
        let n = rustix::fs::getxattr(proc_path(&fd), name, &mut buf[..]).map_err(errno)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn listxattr(&self, id: INodeNo, size: u32) -> Res<Vec<u8>> {
        let fd = self.fd(id)?;
        let mut buf = vec![0u8; if size == 0 { 65536 } else { size as usize }];
        let n = rustix::fs::listxattr(proc_path(&fd), &mut buf[..]).map_err(errno)?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// The filesystem `fuser` serves: every answer waits out the latency first.
struct SlowFs {
    inner: Arc<Inner>,
    delay: Arc<Delay>,
}

impl SlowFs {
    /// Answers after the latency: `work` runs on an executor then.
    fn later(&self, work: impl FnOnce(&Inner) + Send + 'static) {
        let inner = self.inner.clone();
        self.delay.later(move || work(&inner));
    }
}

fn reply_entry(reply: ReplyEntry, r: Res<FileAttr>) {
    match r {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_attr(reply: ReplyAttr, r: Res<FileAttr>) {
    match r {
        Ok(attr) => reply.attr(&TTL, &attr),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Res<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, r: Res<Vec<u8>>) {
    match r {
        Ok(data) if size == 0 => reply.size(data.len() as u32),
        Ok(data) if data.len() > size as usize => reply.error(Errno::from_i32(libc::ERANGE)),
        Ok(data) => reply.data(&data),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for SlowFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Lookups and reads in one directory in parallel, as a network client sends them.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_PARALLEL_DIROPS);
        Ok(())
    }

    fn destroy(&mut self) {
        self.delay.stop();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_owned();
        self.later(move |fs| reply_entry(reply, fs.lookup(parent, &name)));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        // Not answered: no round trip to wait for.
        self.inner.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.later(move |fs| reply_attr(reply, fs.fd(ino).and_then(|fd| fs.attr_of(&fd))));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.later(move |fs| {
            reply_attr(reply, fs.setattr(ino, mode, uid, gid, size, atime, mtime))
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.later(move |fs| {
            let r = fs
                .fd(ino)
                .and_then(|fd| rustix::fs::readlinkat(&*fd, "", Vec::new()).map_err(errno));
            match r {
                Ok(target) => reply.data(target.as_bytes()),
                Err(e) => reply.error(e),
            }
        });
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = name.to_owned();
        self.later(move |fs| {
            let r = fs.fd(parent).and_then(|dir| {
                let kind = rustix::fs::FileType::from_raw_mode(mode);
                rustix::fs::mknodat(
                    &*dir,
                    &name,
                    kind,
                    Mode::from_raw_mode(mode & !umask & 0o7777),
                    rdev.into(),
                )
                .map_err(errno)
            });
            reply_entry(reply, r.and_then(|()| fs.lookup(parent, &name)));
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let name = name.to_owned();
        self.later(move |fs| {
            let r = fs.fd(parent).and_then(|dir| {
                rustix::fs::mkdirat(&*dir, &name, Mode::from_raw_mode(mode & !umask & 0o7777))
                    .map_err(errno)
            });
            reply_entry(reply, r.and_then(|()| fs.lookup(parent, &name)));
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.later(move |fs| {
            let r = fs.fd(parent).and_then(|dir| {
                rustix::fs::unlinkat(&*dir, &name, AtFlags::empty()).map_err(errno)
            });
            reply_empty(reply, r);
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.later(move |fs| {
            let r = fs.fd(parent).and_then(|dir| {
                rustix::fs::unlinkat(&*dir, &name, AtFlags::REMOVEDIR).map_err(errno)
            });
            reply_empty(reply, r);
        });
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let name = link_name.to_owned();
        let target = target.to_owned();
        self.later(move |fs| {
            let r = fs
                .fd(parent)
                .and_then(|dir| rustix::fs::symlinkat(&target, &*dir, &name).map_err(errno));
            reply_entry(reply, r.and_then(|()| fs.lookup(parent, &name)));
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = (name.to_owned(), newname.to_owned());
        self.later(move |fs| {
            let r = fs.fd(parent).and_then(|from| {
                let to = fs.fd(newparent)?;
                rustix::fs::renameat_with(
                    &*from,
                    &name,
                    &*to,
                    &newname,
                    rustix::fs::RenameFlags::from_bits_retain(flags.bits()),
                )
                .map_err(errno)
            });
            reply_empty(reply, r);
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let newname = newname.to_owned();
        self.later(move |fs| {
            let r = fs.fd(ino).and_then(|fd| {
                let to = fs.fd(newparent)?;
                rustix::fs::linkat(&*fd, "", &*to, &newname, AtFlags::EMPTY_PATH).map_err(errno)
            });
            reply_entry(reply, r.and_then(|()| fs.lookup(newparent, &newname)));
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.later(move |fs| match fs.open_file(ino, flags.0) {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        self.later(move |fs| {
            let r = fs.file(fh).and_then(|f| {
                let mut buf = vec![0u8; size as usize];
                let n = f.read_at(&mut buf, offset).map_err(io_errno)?;
                buf.truncate(n);
                Ok(buf)
            });
            match r {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(e),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.later(move |fs| {
            let r = fs
                .file(fh)
                .and_then(|f| f.write_at(&data, offset).map_err(io_errno));
            match r {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(e),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        self.later(move |_| reply.ok());
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.later(move |fs| {
            fs.release(fh);
            reply.ok();
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.later(move |fs| {
            reply_empty(
                reply,
                fs.file(fh).and_then(|f| f.sync_all().map_err(io_errno)),
            );
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.later(move |fs| match fs.open_dir(ino) {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.later(move |fs| match fs.dir(fh) {
            Ok(entries) => {
                for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.later(move |fs| {
            fs.release(fh);
            reply.ok();
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.later(move |_| reply.ok());
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        self.later(move |fs| {
            let r = fs
                .fd(ino)
                .and_then(|fd| rustix::fs::fstatvfs(&*fd).map_err(errno));
            match r {
                Ok(st) => reply.statfs(
                    st.f_blocks,
                    st.f_bfree,
                    st.f_bavail,
                    st.f_files,
                    st.f_ffree,
                    st.f_bsize as u32,
                    st.f_namemax as u32,
                    st.f_frsize as u32,
                ),
                Err(e) => reply.error(e),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let (name, value) = (name.to_owned(), value.to_vec());
        self.later(move |fs| {
            let r = fs.fd(ino).and_then(|fd| {
                rustix::fs::setxattr(
                    proc_path(&fd),
                    &name,
                    &value,
                    rustix::fs::XattrFlags::from_bits_retain(flags as u32),
                )
                .map_err(errno)
            });
            reply_empty(reply, r);
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = name.to_owned();
        self.later(move |fs| reply_xattr(reply, size, fs.getxattr(ino, &name, size)));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.later(move |fs| reply_xattr(reply, size, fs.listxattr(ino, size)));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.later(move |fs| {
            let r = fs
                .fd(ino)
                .and_then(|fd| rustix::fs::removexattr(proc_path(&fd), &name).map_err(errno));
            reply_empty(reply, r);
        });
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        self.later(move |_| reply.ok());
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = name.to_owned();
        self.later(move |fs| {
            let r = fs.fd(parent).and_then(|dir| {
                let file = rustix::fs::openat(
                    &*dir,
                    &name,
                    OFlags::from_bits_retain(flags as u32)
                        | OFlags::CREATE
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(mode & !umask & 0o7777),
                )
                .map_err(errno)?;
                let attr = fs.lookup(parent, &name)?;
                let fh = fs.add_handle(Handle::File(Arc::new(std::fs::File::from(file))));
                Ok((attr, fh))
            });
            match r {
                Ok((attr, fh)) => {
                    reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::empty())
                }
                Err(e) => reply.error(e),
            }
        });
    }
}

/// A slow passthrough of `backing`, mounted on `mountpoint` until dropped.
pub struct SlowMount {
    session: Option<fuser::BackgroundSession>,
    delay: Arc<Delay>,
    executors: Vec<std::thread::JoinHandle<()>>,
    mountpoint: PathBuf,
}

impl SlowMount {
    /// Mounts a passthrough of the directory `backing` on the empty directory `mountpoint`,
    /// every request answered `latency` after it arrived. Needs `/dev/fuse` and
    /// `fusermount3` (Debian: fuse3).
    pub fn mount(backing: &Path, mountpoint: &Path, latency: Duration) -> io::Result<SlowMount> {
        let root = rustix::fs::open(
            backing,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io::Error::other(format!("{}: {e}", backing.display())))?;
        let root_ino = rustix::fs::fstat(&root)
            .map_err(|e| io::Error::other(format!("{}: {e}", backing.display())))?
            .st_ino;
        let inner = Arc::new(Inner {
            nodes: Mutex::new(HashMap::from([(
                1,
                Node {
                    fd: Arc::new(root),
                    lookups: 1,
                },
            )])),
            handles: Mutex::new((0, HashMap::new())),
            root_ino,
        });
        let delay = Arc::new(Delay {
            latency,
            state: Mutex::new(DelayState::default()),
            ready: Condvar::new(),
        });
        let executors = (0..EXECUTORS)
            .map(|i| {
                let delay = delay.clone();
                std::thread::Builder::new()
                    .name(format!("slow-fs-{i}"))
                    .spawn(move || delay.execute())
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut mounted = SlowMount {
            session: None,
            delay: delay.clone(),
            executors,
            mountpoint: mountpoint.to_path_buf(),
        };
        if !Path::new("/dev/fuse").exists() {
            return Err(io::Error::other(
                "/dev/fuse is missing: the slow bed needs the fuse kernel module",
            ));
        }
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("volsec-slow".into()),
            fuser::MountOption::Subtype("volsec-slow".into()),
            fuser::MountOption::AutoUnmount,
            fuser::MountOption::DefaultPermissions,
        ];
        config.acl = fuser::SessionACL::All;
        config.n_threads = Some(READERS);
        config.clone_fd = true;
        let fs = SlowFs { inner, delay };
        let session = fuser::Session::new(fs, mountpoint, &config).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "mounting the slow bed on {}: {e} (needs /dev/fuse and fusermount3: \
                     apt-get install fuse3)",
                    mountpoint.display()
                ),
            )
        })?;
        mounted.session = Some(session.spawn()?);
        Ok(mounted)
    }

    /// The mounted view.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for SlowMount {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            // Unmounted here rather than left to `fusermount3 -o auto_unmount`, which does
            // it only when this process's end closes its socket: the request threads end
            // when the kernel drops the connection.
            let unmounted = std::process::Command::new("umount")
                .arg(&self.mountpoint)
                .status()
                .is_ok_and(|s| s.success());
            if !unmounted {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.mountpoint)
                    .status();
            }
            let _ = session.umount_and_join();
        }
        self.delay.stop();
        for t in self.executors.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_as_the_flag_takes_them() {
        assert_eq!(parse_latency("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_latency("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_latency("0.2ms"), Ok(Duration::from_micros(200)));
        assert_eq!(parse_latency("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_latency("0us"), Ok(Duration::ZERO));
        assert!(parse_latency("500").is_err());
        assert!(parse_latency("fast").is_err());
        assert!(parse_latency("5parsecs").is_err());
        assert!(parse_latency("11s").is_err());
        assert_eq!(latency_name(Duration::from_micros(500)), "500us");
        assert_eq!(latency_name(Duration::from_millis(2)), "2ms");
        assert_eq!(latency_name(Duration::ZERO), "0us");
    }
}
