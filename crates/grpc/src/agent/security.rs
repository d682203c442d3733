//! Who may talk to the agent, and which directories it may touch.
//!
//! The agent runs as host root and changes whatever tree it is pointed at, so three fences
//! stand between a caller and a volume:
//! 1. the socket is created `0600` and owned by root (the umask is set before `bind`, so it
//!    never exists with looser permissions, not even for an instant);
//! 2. every call's peer credentials (`SO_PEERCRED`, taken by the kernel at `connect`) must
//!    name an allowed uid (`--allow-uid`, default 0), in case the socket's mode or directory
//!    is loosened by mistake;
//! 3. a requested path must be absolute, free of `..`, lexically below an allowed root
//!    (`--allowed-root`, default `/var/lib/kubelet`), and must open as a directory without
//!    following a symlink at any component ([`Root::open`]). The walk itself opens it the
//!    same way again, so a symlink swapped in later is refused then too.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};
use volsec_core::display;
use volsec_core::walk::{Root, RootError};

/// Mode of the agent's socket.
pub const SOCKET_MODE: u32 = 0o600;

/// Binds the agent's Unix socket at `path`, `0600`. A stale socket left by a previous run is
/// removed; anything else at that path is refused, never removed. A missing parent
/// directory is created `0700`.
pub fn bind_socket(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| with_path(dir, "cannot create the socket directory", e))?;
        }
    }
    remove_stale_socket(path)?;
    // The umask is process-wide: this runs at start-up, before any other file is created.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(|e| with_path(path, "cannot bind the socket", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| with_path(path, "cannot set the socket's mode", e))?;
    Ok(listener)
}

/// The listening socket systemd passed by socket activation (`volsec.socket`), if any.
/// systemd creates it with the unit's `SocketMode=0600`; a looser mode is logged.
pub fn inherited_socket() -> io::Result<Option<std::os::unix::net::UnixListener>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count: usize = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if !for_us || count == 0 {
        return Ok(None);
    }
    // Not for our children.
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if count != 1 {
        return Err(io::Error::other(format!(
            "systemd passed {count} sockets; volsec.socket must declare exactly one ListenStream"
        )));
    }
    let listener = volsec_core::sys::adopt_listen_fd()?;
    let addr = listener.local_addr().map_err(|e| {
        io::Error::other(format!(
            "the socket systemd passed is not a Unix socket: {e}"
        ))
    })?;
    if let Some(path) = addr.as_pathname() {
        let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777);
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the socket is not 0600; peer uids are still checked (SocketMode=0600 in volsec.socket)");
        }
    }
    Ok(Some(listener))
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A socket something still accepts on is another agent's, not stale: taking
            // the path over would leave that agent running, ready, and unreachable.
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!(
                            "{}: another agent is serving on this socket; refusing to take it over (stop that agent first, or give another --socket)",
                            path.display()
                        ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(with_path(path, "cannot tell whether the socket is in use", e)),
            }
            std::fs::remove_file(path)
                .map_err(|e| with_path(path, "cannot remove the stale socket", e))
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{}: exists and is not a socket; refusing to remove it (give another --socket)",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(with_path(path, "cannot inspect", e)),
    }
}

fn with_path(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
}

/// Checks a call's peer credentials against the allowed uids.
#[derive(Debug, Clone)]
pub struct PeerCheck {
    pub allowed_uids: Vec<u32>,
}

impl PeerCheck {
    /// The uid of the process at the other end of the socket, or PermissionDenied.
    pub fn check<T>(&self, request: &Request<T>) -> Result<u32, Status> {
        let cred = request
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred)
            .ok_or_else(|| {
                Status::permission_denied(
                    "the caller's credentials are unknown (SO_PEERCRED): only local callers on the agent's Unix socket are served",
                )
            })?;
        let uid = cred.uid();
        if self.allowed_uids.contains(&uid) {
            Ok(uid)
        } else {
            Err(Status::permission_denied(format!(
                "uid {uid} (pid {}) may not call the agent: allowed uids are {:?} (--allow-uid)",
                cred.pid().unwrap_or(0),
                self.allowed_uids
            )))
        }
    }
}

/// Why a requested path was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty: give the volume's root directory")]
    Empty,
    #[error("{}: not an absolute path", display::path(.0))]
    Relative(PathBuf),
    #[error("{}: `..` is not allowed in a volume path", display::path(.0))]
    DotDot(PathBuf),
    #[error(
        "{}: not below an allowed root ({allowed}); see --allowed-root",
        display::path(path)
    )]
    Outside { path: PathBuf, allowed: String },
    #[error("/ cannot be an allowed root: it would let callers change every directory on the node; give the directories volumes are mounted under, e.g. /var/lib/kubelet")]
    WholeFilesystem,
    #[error("{}: {} is a symlink, and volume paths are opened without following one, so no volume below it could be prepared; give the resolved directory", display::path(root), display::path(link))]
    ThroughSymlink { root: PathBuf, link: PathBuf },
    #[error(transparent)]
    Root(#[from] RootError),
}

impl From<PathError> for Status {
    fn from(e: PathError) -> Status {
        let msg = e.to_string();
        match e {
            PathError::Empty
            | PathError::Relative(_)
            | PathError::DotDot(_)
            | PathError::WholeFilesystem
            | PathError::ThroughSymlink { .. } => Status::invalid_argument(msg),
            PathError::Outside { .. } | PathError::Root(RootError::Symlink(_)) => {
                Status::permission_denied(msg)
            }
            PathError::Root(RootError::Missing(_)) => Status::not_found(msg),
            PathError::Root(_) => Status::failed_precondition(msg),
        }
    }
}

/// The directories under which volumes may be prepared.
#[derive(Debug, Clone)]
pub struct AllowedRoots(Vec<PathBuf>);

impl AllowedRoots {
    /// Checks and normalizes each prefix ([`allowed_root`]).
    pub fn new(roots: &[PathBuf]) -> Result<AllowedRoots, PathError> {
        roots
            .iter()
            .map(|r| allowed_root(r))
            .collect::<Result<_, _>>()
            .map(AllowedRoots)
    }

    /// Checks `path` and returns it normalized (no `.`, no doubled or trailing `/`). The
    /// path must be strictly below an allowed root (never the root itself) and open as a
    /// directory without a symlink at any component.
    pub fn check(&self, path: &str) -> Result<PathBuf, PathError> {
        if path.is_empty() {
            return Err(PathError::Empty);
        }
        let path = lexical(Path::new(path))?;
        let inside = self
            .0
            .iter()
            .any(|root| path.starts_with(root) && path != *root);
        if !inside {
            return Err(PathError::Outside {
                allowed: self.describe(),
                path,
            });
        }
        Root::open(&path)?;
        Ok(path)
    }

    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .0
            .iter()
            .map(|r| display::path(r).to_string())
            .collect();
        names.join(", ")
    }
}

/// One `--allowed-root`, normalized. Refused: a relative path or one with `..`; `/`, which
/// would hand callers the whole node; and a path through a symlink, below which no volume
/// could be opened (volume paths are opened without following one), so the agent would
/// start and refuse every call. A root that does not exist yet is allowed (its disks may
/// be mounted later); only the components that exist are checked.
pub fn allowed_root(root: &Path) -> Result<PathBuf, PathError> {
    let root = lexical(root)?;
    if root == Path::new("/") {
        return Err(PathError::WholeFilesystem);
    }
    for link in root.ancestors().collect::<Vec<_>>().into_iter().rev() {
        match std::fs::symlink_metadata(link) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(PathError::ThroughSymlink {
                    link: link.to_path_buf(),
                    root,
                })
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(root)
}

/// The path with `.` and empty components dropped; `..` and relative paths refused.
fn lexical(path: &Path) -> Result<PathBuf, PathError> {
    if !path.is_absolute() {
        return Err(PathError::Relative(path.to_path_buf()));
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(name),
            Component::ParentDir => return Err(PathError::DotDot(path.to_path_buf())),
            Component::Prefix(_) => return Err(PathError::Relative(path.to_path_buf())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_paths() {
        assert_eq!(
            lexical(Path::new("/a//b/./c/")).unwrap(),
            PathBuf::from("/a/b/c")
        );
        assert!(matches!(
            lexical(Path::new("/a/../b")),
            Err(PathError::DotDot(_))
        ));
        assert!(matches!(
            lexical(Path::new("a/b")),
            Err(PathError::Relative(_))
        ));
    }

    #[test]
    fn prefix_is_by_component_and_never_the_root_itself() {
        let roots = AllowedRoots::new(&[PathBuf::from("/var/lib/kubelet")]).unwrap();
        let outside = |p: &str| matches!(roots.check(p), Err(PathError::Outside { .. }));
        assert!(outside("/var/lib/kubelet"));
        assert!(outside("/var/lib/kubelet/"));
        assert!(outside("/var/lib/kubelet-evil/x"));
        assert!(outside("/etc"));
        assert!(matches!(
            roots.check("/var/lib/kubelet/../../etc"),
            Err(PathError::DotDot(_))
        ));
    }
}
