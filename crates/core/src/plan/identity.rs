//! The identity each container of a pod runs with: uid, gid and supplementary groups.
//!
//! Whether a process can use a volume after fsGroup is applied depends on its groups, and
//! those come from four pod fields plus, unless `supplementalGroupsPolicy: Strict`, the
//! image's own `/etc/group` (the implicit membership of kubernetes issue 112879). The
//! container runtime computes them when the container starts; volsec computes the same
//! from the manifest and, when given, the image's `/etc/passwd` and `/etc/group`.

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};
use serde::Serialize;

/// An image's accounts: `/etc/passwd` and `/etc/group`, as text the caller has read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageAccounts {
    /// The lines of `/etc/passwd`.
    pub users: Vec<User>,
    /// The lines of `/etc/group`.
    pub groups: Vec<Group>,
}

/// One line of `/etc/passwd`: the fields the identity needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name.
    pub name: String,
    /// The uid.
    pub uid: i64,
    /// The primary group.
    pub gid: i64,
}

/// One line of `/etc/group`: the fields the identity needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// The gid.
    pub gid: i64,
    /// The user names listed as members: the image's implicit supplementary groups.
    pub members: Vec<String>,
}

impl ImageAccounts {
    /// Parses `/etc/passwd` and `/etc/group` text; malformed lines are ignored, as libc does.
    pub fn parse(passwd: &str, group: &str) -> ImageAccounts {
        let fields = |line: &str| -> Vec<String> { line.split(':').map(str::to_string).collect() };
        let users = passwd
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(fields)
            .filter_map(|f| {
                Some(User {
                    name: f.first()?.clone(),
                    uid: f.get(2)?.parse().ok()?,
                    gid: f.get(3)?.parse().ok()?,
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(fields)
            .filter_map(|f| {
                Some(Group {
                    name: f.first()?.clone(),
                    gid: f.get(2)?.parse().ok()?,
                    members: f
                        .get(3)?
                        .split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            })
            .collect();
        ImageAccounts { users, groups }
    }

    /// Reads `etc/passwd` and `etc/group` of an unpacked image at `root`. Paths resolve as
    /// inside the container (`RESOLVE_IN_ROOT`): a symlink in the image cannot lead to the
    /// host's files. A missing file means no entries, as for the runtime.
    pub fn read(root: &std::path::Path) -> std::io::Result<ImageAccounts> {
        let root_fd = rustix::fs::open(
            root,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let read = |name: &str| -> std::io::Result<String> {
            match rustix::fs::openat2(
                &root_fd,
                name,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
                rustix::fs::ResolveFlags::IN_ROOT | rustix::fs::ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => std::io::read_to_string(std::fs::File::from(fd)),
                Err(rustix::io::Errno::NOENT) => Ok(String::new()),
                Err(e) => Err(e.into()),
            }
        };
        Ok(ImageAccounts::parse(
            &read("etc/passwd")?,
            &read("etc/group")?,
        ))
    }

    fn user(&self, uid: i64) -> Option<&User> {
        self.users.iter().find(|u| u.uid == uid)
    }

    /// The groups whose member list names `user` (what the runtime merges).
    fn groups_of(&self, user: &str) -> impl Iterator<Item = i64> + '_ {
        let user = user.to_string();
        self.groups
            .iter()
            .filter(move |g| g.members.contains(&user))
            .map(|g| g.gid)
    }
}

/// Which list of the pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerKind {
    /// `initContainers`.
    Init,
    /// `containers`.
    Container,
    /// `ephemeralContainers`.
    Ephemeral,
}

impl ContainerKind {
    /// The pod spec's list, for messages: `initContainers`, ...
    pub fn field(&self) -> &'static str {
        match self {
            ContainerKind::Init => "initContainers",
            ContainerKind::Container => "containers",
            ContainerKind::Ephemeral => "ephemeralContainers",
        }
    }
}

/// The identity one container's first process runs with, and what it does with the volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerIdentity {
    /// The container's name.
    pub name: String,
    /// Which list of the pod spec it is in.
    pub kind: ContainerKind,
    /// runAsUser (container, else pod); `null`: the image's USER decides.
    pub uid: Option<i64>,
    /// runAsGroup (container, else pod), else the user's group in the image's /etc/passwd,
    /// else 0; `null`: it depends on the image, which was not given.
    pub gid: Option<i64>,
    /// Every group of the process, sorted, the primary one included (as `id` shows them).
    pub groups: Vec<i64>,
    /// `Merge` or `Strict`, as the node applies it.
    pub supplemental_groups_policy: &'static str,
    /// With Merge, whether the image's /etc/group was read; if not, `groups` may miss some.
    pub image_groups_known: bool,
    /// `securityContext.privileged`: the process bypasses file permissions.
    pub privileged: bool,
    /// The container mounts the planned volume.
    pub mounts_volume: bool,
    /// It mounts it read-only (`volumeMounts[].readOnly`).
    pub mount_read_only: bool,
}

/// Inputs for one container's identity.
pub(crate) struct IdentityInputs<'a> {
    pub container: &'a Container,
    pub kind: ContainerKind,
    pub pod: Option<&'a PodSecurityContext>,
    pub volume: &'a str,
    /// SupplementalGroupsPolicy is enabled, so `Strict` is honoured.
    pub strict_allowed: bool,
    pub image: Option<&'a ImageAccounts>,
}

pub(crate) fn identity(i: &IdentityInputs) -> ContainerIdentity {
    let sc: Option<&SecurityContext> = i.container.security_context.as_ref();
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| i.pod.and_then(|p| p.run_as_user));
    let image_user = uid.and_then(|uid| i.image.and_then(|img| img.user(uid)));
    let gid = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| i.pod.and_then(|p| p.run_as_group))
        .or_else(|| image_user.map(|u| u.gid))
        // A uid the image does not list runs with gid 0; an unknown uid (the image's USER)
        // leaves the gid unknown too.
        .or_else(|| (i.image.is_some() && uid.is_some()).then_some(0));
    let strict = i.strict_allowed
        && i.pod.and_then(|p| p.supplemental_groups_policy.as_deref()) == Some("Strict");
    let mut groups: Vec<i64> = gid.into_iter().collect();
    groups.extend(i.pod.and_then(|p| p.fs_group));
    groups.extend(
        i.pod
            .and_then(|p| p.supplemental_groups.clone())
            .unwrap_or_default(),
    );
    if !strict {
        if let (Some(img), Some(user)) = (i.image, image_user) {
            groups.extend(img.groups_of(&user.name));
        }
    }
    groups.sort_unstable();
    groups.dedup();
    let mount = i
        .container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name == i.volume)
        .collect::<Vec<_>>();
    ContainerIdentity {
        name: i.container.name.clone(),
        kind: i.kind,
        uid,
        gid,
        groups,
        supplemental_groups_policy: if strict { "Strict" } else { "Merge" },
        image_groups_known: strict || i.image.is_some(),
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        mounts_volume: !mount.is_empty(),
        mount_read_only: !mount.is_empty() && mount.iter().all(|m| m.read_only == Some(true)),
    }
}

/// Every container of the pod (init, regular, ephemeral), as kubelet visits them.
pub(crate) fn all_containers(pod: &Pod) -> Vec<(ContainerKind, Container)> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let mut out: Vec<(ContainerKind, Container)> = Vec::new();
    out.extend(
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| (ContainerKind::Init, c.clone())),
    );
    out.extend(
        spec.containers
            .iter()
            .map(|c| (ContainerKind::Container, c.clone())),
    );
    for e in spec.ephemeral_containers.iter().flatten() {
        // An ephemeral container has the fields kubelet reads here under the same names.
        let c = Container {
            name: e.name.clone(),
            security_context: e.security_context.clone(),
            volume_mounts: e.volume_mounts.clone(),
            volume_devices: e.volume_devices.clone(),
            ..Default::default()
        };
        out.push((ContainerKind::Ephemeral, c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(yaml: &str) -> Container {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn pod_sc(yaml: &str) -> PodSecurityContext {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn merge_adds_the_image_groups_of_the_user() {
        let img = ImageAccounts::parse(
            "root:x:0:0::/root:/bin/sh\nuser-defined-in-image:x:1000:1000::/home:/bin/sh\n",
            "user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n",
        );
        let pod = pod_sc("runAsUser: 1000\nrunAsGroup: 3000\nsupplementalGroups: [4000]\n");
        let c = container("name: c\n");
        let id = identity(&IdentityInputs {
            container: &c,
            kind: ContainerKind::Container,
            pod: Some(&pod),
            volume: "v",
            strict_allowed: true,
            image: Some(&img),
        });
        assert_eq!((id.uid, id.gid), (Some(1000), Some(3000)));
        assert_eq!(id.groups, vec![3000, 4000, 50000]);
        let strict = pod_sc("runAsUser: 1000\nrunAsGroup: 3000\nsupplementalGroups: [4000]\nsupplementalGroupsPolicy: Strict\n");
        let id = identity(&IdentityInputs {
            container: &c,
            kind: ContainerKind::Container,
            pod: Some(&strict),
            volume: "v",
            strict_allowed: true,
            image: Some(&img),
        });
        assert_eq!(id.groups, vec![3000, 4000]);
        assert_eq!(id.supplemental_groups_policy, "Strict");
    }

    #[test]
    fn container_overrides_pod_and_unknowns_stay_unknown() {
        let pod = pod_sc("runAsUser: 1000\n");
        let c = container("name: c\nsecurityContext:\n  runAsUser: 2000\n");
        let id = identity(&IdentityInputs {
            container: &c,
            kind: ContainerKind::Container,
            pod: Some(&pod),
            volume: "v",
            strict_allowed: true,
            image: None,
        });
        assert_eq!((id.uid, id.gid), (Some(2000), None));
        assert!(id.groups.is_empty() && !id.image_groups_known);
    }
}
