//! kubelet's volume decisions, from Pod, PersistentVolume and CSIDriver manifests.
