//! Which volume plugin serves the selected volume, and the facts kubelet's rules read.
//!
//! kubelet's decisions depend less on the pod than on the plugin behind the volume: a CSI
//! driver, an ephemeral emptyDir, an atomic-writer secret, or a PersistentVolume of some
//! in-tree type reached through a claim. This module follows the pod's volume to that
//! plugin once, so the rules in `decide` read plain facts (driver, fsType, read-only,
//! access modes, inline or not).

use super::inputs::DecideError;
use k8s_openapi::api::core::v1::{PersistentVolume, Pod, Volume as PodVolume};
use serde::Serialize;

/// The volume plugin kubelet picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plugin {
    Csi {
        driver: String,
    },
    EmptyDir,
    /// secret, configMap, downwardAPI, projected: written by kubelet's atomic writer.
    AtomicWriter(&'static str),
    Local,
    Iscsi,
    Fc,
    HostPath,
    Nfs,
}

impl Plugin {
    pub fn name(&self) -> &'static str {
        match self {
            Plugin::Csi { .. } => "csi",
            Plugin::EmptyDir => "emptyDir",
            Plugin::AtomicWriter(kind) => kind,
            Plugin::Local => "local",
            Plugin::Iscsi => "iscsi",
            Plugin::Fc => "fc",
            Plugin::HostPath => "hostPath",
            Plugin::Nfs => "nfs",
        }
    }

    /// The plugin tells the runtime to relabel its volumes (`SELinuxRelabel`); hostPath and
    /// NFS do not.
    pub fn relabels(&self) -> bool {
        !matches!(self, Plugin::HostPath | Plugin::Nfs)
    }
}

/// The selected volume, followed to its plugin.
#[derive(Debug, Clone)]
pub(crate) struct Resolved<'a> {
    pub plugin: Plugin,
    pub pv: Option<&'a PersistentVolume>,
    pub info: VolumeInfo,
}

/// What the plan says about the volume (part of the JSON output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    /// The volume's name in `spec.volumes`.
    pub name: String,
    /// The pod's volume source: `csi`, `persistentVolumeClaim`, `ephemeral`, `emptyDir`, ...
    pub source: String,
    /// The volume plugin behind it: `csi`, `local`, `iscsi`, `emptyDir`, ...
    pub plugin: String,
    /// The CSI driver's name, for a CSI volume (inline, ephemeral or through a PersistentVolume).
    pub driver: Option<String>,
    /// The PersistentVolumeClaim the volume names, if any.
    pub claim_name: Option<String>,
    /// The PersistentVolume bound to that claim, if given.
    pub persistent_volume: Option<String>,
    /// The PersistentVolume's `spec.accessModes`; `null` for an inline volume or when unset.
    pub access_modes: Option<Vec<String>>,
    /// The fsType kubelet sees; empty when none is set.
    pub fs_type: String,
    /// The volume is mounted read-only (the pod's volume source or the PersistentVolume says so).
    pub read_only: bool,
    /// Defined in the pod itself rather than through a PersistentVolume.
    pub inline: bool,
}

/// Finds `name` in the pod and follows it to its plugin.
pub(crate) fn resolve<'a>(
    pod: &Pod,
    name: &str,
    pv: Option<&'a PersistentVolume>,
) -> Result<Resolved<'a>, DecideError> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some((index, vol)) = volumes.iter().enumerate().find(|(_, v)| v.name == name) else {
        let known: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        let known = if known.is_empty() {
            "it has none".to_string()
        } else {
            format!("its volumes are {}", known.join(", "))
        };
        return Err(DecideError::pod(format!(
            "field spec.volumes: the pod has no volume named {name:?}; {known}"
        )));
    };
    if let Some(r) = inline(vol) {
        return Ok(r);
    }
    let claim = if let Some(c) = &vol.persistent_volume_claim {
        Some((
            "persistentVolumeClaim",
            c.claim_name.clone(),
            c.read_only.unwrap_or(false),
        ))
    } else if vol.ephemeral.is_some() {
        // A generic ephemeral volume's claim is named <pod>-<volume>.
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        Some(("ephemeral", format!("{pod_name}-{name}"), false))
    } else {
        None
    };
    let Some((source, claim_name, claim_ro)) = claim else {
        return Err(DecideError::pod(format!(
            "field spec.volumes[{index}] ({name}): its volume source is not one volsec models; expected csi, emptyDir, secret, configMap, downwardAPI, projected, iscsi, fc, hostPath, nfs, persistentVolumeClaim or ephemeral"
        )));
    };
    let Some(pv) = pv else {
        return Err(DecideError::pod(format!(
            "field spec.volumes[{index}] ({name}): it uses the PersistentVolumeClaim {claim_name:?}; give the PersistentVolume bound to it with --pv FILE"
        )));
    };
    through_pv(pv, name, source, claim_name, claim_ro)
}

fn info(name: &str, source: &str, plugin: &Plugin) -> VolumeInfo {
    VolumeInfo {
        name: name.to_string(),
        source: source.to_string(),
        plugin: plugin.name().to_string(),
        driver: match plugin {
            Plugin::Csi { driver } => Some(driver.clone()),
            _ => None,
        },
        claim_name: None,
        persistent_volume: None,
        access_modes: None,
        fs_type: String::new(),
        read_only: false,
        inline: true,
    }
}

/// A volume defined in the pod itself.
fn inline(vol: &PodVolume) -> Option<Resolved<'static>> {
    let (plugin, fs_type, read_only) = if let Some(csi) = &vol.csi {
        (
            Plugin::Csi {
                driver: csi.driver.clone(),
            },
            csi.fs_type.clone(),
            csi.read_only,
        )
    } else if vol.empty_dir.is_some() {
        (Plugin::EmptyDir, None, None)
    } else if vol.secret.is_some() {
        (Plugin::AtomicWriter("secret"), None, Some(true))
    } else if vol.config_map.is_some() {
        (Plugin::AtomicWriter("configMap"), None, Some(true))
    } else if vol.downward_api.is_some() {
        (Plugin::AtomicWriter("downwardAPI"), None, Some(true))
    } else if vol.projected.is_some() {
        (Plugin::AtomicWriter("projected"), None, Some(true))
    } else if let Some(s) = &vol.iscsi {
        (Plugin::Iscsi, s.fs_type.clone(), s.read_only)
    } else if let Some(s) = &vol.fc {
        (Plugin::Fc, s.fs_type.clone(), s.read_only)
    } else if vol.host_path.is_some() {
        (Plugin::HostPath, None, None)
    } else if let Some(s) = &vol.nfs {
        (Plugin::Nfs, None, s.read_only)
    } else {
        return None;
    };
    let mut info = info(&vol.name, plugin.name(), &plugin);
    info.fs_type = fs_type.unwrap_or_default();
    info.read_only = read_only.unwrap_or(false);
    Some(Resolved {
        plugin,
        pv: None,
        info,
    })
}

/// A volume reached through a claim: the PersistentVolume decides the plugin.
fn through_pv<'a>(
    pv: &'a PersistentVolume,
    name: &str,
    source: &str,
    claim_name: String,
    claim_ro: bool,
) -> Result<Resolved<'a>, DecideError> {
    let pv_name = pv.metadata.name.clone().unwrap_or_default();
    let spec = pv.spec.as_ref().ok_or_else(|| {
        DecideError::pv(format!(
            "field spec: the PersistentVolume {pv_name:?} has no spec; expected a volume source such as csi"
        ))
    })?;
    if let Some(bound) = spec.claim_ref.as_ref().and_then(|r| r.name.as_deref()) {
        if bound != claim_name {
            return Err(DecideError::pv(format!(
                "field spec.claimRef.name: the PersistentVolume {pv_name:?} is bound to claim {bound:?}, but volume {name:?} uses claim {claim_name:?}"
            )));
        }
    }
    let (plugin, fs_type, ro) = if let Some(csi) = &spec.csi {
        (
            Plugin::Csi {
                driver: csi.driver.clone(),
            },
            csi.fs_type.clone(),
            csi.read_only,
        )
    } else if let Some(s) = &spec.local {
        (Plugin::Local, s.fs_type.clone(), None)
    } else if let Some(s) = &spec.iscsi {
        (Plugin::Iscsi, s.fs_type.clone(), s.read_only)
    } else if let Some(s) = &spec.fc {
        (Plugin::Fc, s.fs_type.clone(), s.read_only)
    } else if spec.host_path.is_some() {
        (Plugin::HostPath, None, None)
    } else if let Some(s) = &spec.nfs {
        (Plugin::Nfs, None, s.read_only)
    } else {
        return Err(DecideError::pv(format!(
            "field spec: the PersistentVolume {pv_name:?} has no volume source volsec models; expected csi, local, iscsi, fc, hostPath or nfs"
        )));
    };
    let mut info = info(name, source, &plugin);
    info.claim_name = Some(claim_name);
    info.persistent_volume = Some(pv_name);
    info.access_modes = spec.access_modes.clone();
    info.fs_type = fs_type.unwrap_or_default();
    info.read_only = claim_ro || ro.unwrap_or(false);
    info.inline = false;
    Ok(Resolved {
        plugin,
        pv: Some(pv),
        info,
    })
}
