//! Roots no pass may touch, compared by identity.
//!
//! Relabelling `/etc` or a home directory with a container's label makes the node
//! unusable, and a pod can ask for exactly that with a hostPath volume. The container
//! runtimes keep a list of such directories (go-selinux's), but compare path strings, which
//! `/var/../etc`, `/etc/`, a bind mount or a symlink to `/etc` get past. volsec opens the
//! root first (refusing symlinks on the way) and then compares what it opened, by
//! `(st_dev, st_ino)`, with what each listed path is now.
//!
//! There is no override: none of these directories is ever a volume, and `/` least of all.
//! The check covers ownership passes too (a recursive chgrp of `/etc` is as bad).

use crate::sys::Stat;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// go-selinux's list of system directories that must never be relabelled.
pub const SYSTEM_DIRECTORIES: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/etc/passwd",
    "/etc/pki",
    "/etc/shadow",
    "/home",
    "/lib",
    "/lib64",
    "/media",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/lib",
    "/var/log",
];

/// One refused place: how to name it, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why it is refused, as messages say it: `it is /usr`, `it is $HOME, /root`.
    pub what: String,
    /// The refused directory.
    pub path: PathBuf,
}

/// Why `root` must not be walked, if it is a refused system directory.
pub fn refused_root(root: &Stat) -> Option<String> {
    refused_among(root, &refused_places())
}

/// The first of `places` that is the same inode as `root` (listed paths are resolved
/// through symlinks: they are the node's own, and `/lib` is often a link to `/usr/lib`).
pub fn refused_among(root: &Stat, places: &[Refused]) -> Option<String> {
    places
        .iter()
        .find(|place| {
            std::fs::metadata(&place.path)
                .is_ok_and(|st| st.dev() == root.dev && st.ino() == root.ino)
        })
        .map(|place| place.what.clone())
}

/// The system directories, `$HOME`, and the home of `$SUDO_USER`.
pub fn refused_places() -> Vec<Refused> {
    let mut places: Vec<Refused> = SYSTEM_DIRECTORIES
        .iter()
        .map(|dir| Refused {
            what: format!("it is {dir}"),
            path: PathBuf::from(dir),
        })
        .collect();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        places.push(Refused {
            what: format!("it is $HOME, {}", home.display()),
            path: home,
        });
    }
    if let Some(user) = std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty()) {
        let home = crate::sys::home_of(&user).or_else(|| {
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            home_in_passwd(&passwd, &user)
        });
        if let Some(home) = home {
            places.push(Refused {
                what: format!("it is the home of $SUDO_USER {user}, {}", home.display()),
                path: home,
            });
        }
    }
    places
}

/// The home directory of `user` in the text of `/etc/passwd` (when the name service does
/// not answer, as in a static build without NSS).
pub fn home_in_passwd(passwd: &str, user: &str) -> Option<PathBuf> {
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() >= 7 && fields[0] == user)
        .map(|fields| Path::new(fields[5]).to_path_buf())
        .filter(|home| home.is_absolute())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_of(path: &Path) -> Stat {
        let fd = crate::sys::open_root(path).unwrap();
        crate::sys::stat_fd(rustix::fd::AsFd::as_fd(&fd)).unwrap()
    }

    #[test]
    fn system_directories_are_refused_by_identity() {
        assert_eq!(
            refused_root(&stat_of(Path::new("/"))).as_deref(),
            Some("it is /")
        );
        assert_eq!(
            refused_root(&stat_of(Path::new("/etc"))).as_deref(),
            Some("it is /etc")
        );
        assert_eq!(
            refused_root(&stat_of(Path::new("/var/../etc/"))).as_deref(),
            Some("it is /etc")
        );
        assert_eq!(
            refused_root(&stat_of(Path::new("/tmp"))).as_deref(),
            Some("it is /tmp")
        );
    }

    #[test]
    fn directories_below_are_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let places = vec![Refused {
            what: "x".into(),
            path: "/etc".into(),
        }];
        assert_eq!(refused_among(&stat_of(dir.path()), &places), None);
        if std::env::var_os("HOME").is_some_and(|h| Path::new(&h) == dir.path()) {
            panic!("HOME is the test directory");
        }
        assert_eq!(refused_root(&stat_of(dir.path())), None);
    }

    #[test]
    fn extra_places_are_compared_by_inode() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("alice");
        std::fs::create_dir(&home).unwrap();
        let places = vec![Refused {
            what: "it is $HOME".into(),
            path: dir.path().join("alice/../alice"),
        }];
        assert_eq!(
            refused_among(&stat_of(&home), &places).as_deref(),
            Some("it is $HOME")
        );
    }

    #[test]
    fn sudo_users_home_comes_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      alice:x:1000:1000:Alice,,,:/home/alice:/bin/zsh\n\
                      broken:x:1\n";
        assert_eq!(
            home_in_passwd(passwd, "alice"),
            Some(PathBuf::from("/home/alice"))
        );
        assert_eq!(home_in_passwd(passwd, "bob"), None);
        assert_eq!(home_in_passwd(passwd, "broken"), None);
    }

    #[test]
    fn the_name_service_knows_roots_home() {
        assert_eq!(crate::sys::home_of("root"), Some(PathBuf::from("/root")));
        assert_eq!(crate::sys::home_of("no-such-user-volsec"), None);
    }
}
