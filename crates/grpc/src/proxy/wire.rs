//! Protobuf wire editing for the three CSI messages the proxy changes, without decoding
//! them into structs.
//!
//! A message decoded through a subset `.proto` and encoded again loses every field the
//! subset does not know (newer CSI fields, secrets the driver needs). So the proxy reads
//! the few fields it needs straight from the bytes and, where it must change something,
//! rebuilds only the enclosing length-delimited fields on the path to it: every other byte
//! reaches the driver exactly as kubelet sent it.
//!
//! Field numbers are the CSI spec's (`csi.v1`):
//! - `NodeStageVolumeRequest`: volume_capability = 4, volume_context = 6;
//! - `NodePublishVolumeRequest`: volume_id = 1, staging_target_path = 3, target_path = 4,
//!   volume_capability = 5, readonly = 6, volume_context = 8;
//! - `VolumeCapability`: block = 1, mount = 2, access_mode = 3 (`AccessMode.mode` = 1);
//! - `MountVolume`: fs_type = 1, mount_flags = 2, volume_mount_group = 3;
//! - `NodeGetCapabilitiesResponse`: capabilities = 1 (`NodeServiceCapability.rpc` = 1,
//!   `RPC.type` = 1).

use std::collections::BTreeMap;

/// `NodeServiceCapability.RPC.Type.VOLUME_MOUNT_GROUP`.
pub const VOLUME_MOUNT_GROUP: u64 = 6;

/// capabilities(1, LEN 4) { rpc(1, LEN 2) { type(1, varint 6) } }: appended to a
/// `NodeGetCapabilitiesResponse`, it adds one element to the repeated field.
pub const VOLUME_MOUNT_GROUP_CAPABILITY: [u8; 6] = [0x0a, 0x04, 0x0a, 0x02, 0x08, 0x06];

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// Why bytes are not a protobuf message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the message ends inside a field")]
    Truncated,
    #[error("a varint is longer than 10 bytes")]
    BadVarint,
    #[error("field {field} has wire type {wire_type}, which protobuf does not define")]
    BadWireType { field: u64, wire_type: u8 },
    #[error("field {0} is not valid UTF-8")]
    NotUtf8(&'static str),
}

/// One field of a message: its number, wire type, the raw bytes of the whole field (tag
/// included) and, for varints, the value; for LEN fields, the payload.
#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    number: u64,
    wire_type: u8,
    raw: &'a [u8],
    varint: u64,
    payload: &'a [u8],
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut value = 0u64;
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or(WireError::Truncated)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::BadVarint)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The fields of a message, in wire order.
fn fields(buf: &[u8]) -> impl Iterator<Item = Result<Field<'_>, WireError>> {
    let mut pos = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if pos >= buf.len() || failed {
            return None;
        }
        let field = next_field(buf, &mut pos);
        failed = field.is_err();
        Some(field)
    })
}

fn next_field<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Field<'a>, WireError> {
    let start = *pos;
    let tag = varint(buf, pos)?;
    let number = tag >> 3;
    let wire_type = (tag & 7) as u8;
    let mut value = 0;
    let mut payload: &[u8] = &[];
    match wire_type {
        VARINT => value = varint(buf, pos)?,
        I64 => *pos += 8,
        I32 => *pos += 4,
        LEN => {
            let len = usize::try_from(varint(buf, pos)?).map_err(|_| WireError::Truncated)?;
            let end = pos.checked_add(len).ok_or(WireError::Truncated)?;
            payload = buf.get(*pos..end).ok_or(WireError::Truncated)?;
            *pos = end;
        }
        _ => {
            return Err(WireError::BadWireType {
                field: number,
                wire_type,
            })
        }
    }
    let raw = buf.get(start..*pos).ok_or(WireError::Truncated)?;
    Ok(Field {
        number,
        wire_type,
        raw,
        varint: value,
        payload,
    })
}

fn string(payload: &[u8], name: &'static str) -> Result<String, WireError> {
    String::from_utf8(payload.to_vec()).map_err(|_| WireError::NotUtf8(name))
}

/// Whether a `NodeGetCapabilitiesResponse` lists the RPC capability `wanted`.
pub fn has_node_capability(response: &[u8], wanted: u64) -> Result<bool, WireError> {
    for cap in fields(response) {
        let cap = cap?;
        if cap.number != 1 || cap.wire_type != LEN {
            continue;
        }
        for rpc in fields(cap.payload) {
            let rpc = rpc?;
            if rpc.number != 1 || rpc.wire_type != LEN {
                continue;
            }
            for t in fields(rpc.payload) {
                let t = t?;
                if t.number == 1 && t.wire_type == VARINT && t.varint == wanted {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// The driver's `NodeGetCapabilitiesResponse` with VOLUME_MOUNT_GROUP appended.
pub fn with_volume_mount_group(response: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(response.len() + VOLUME_MOUNT_GROUP_CAPABILITY.len());
    out.extend_from_slice(response);
    out.extend_from_slice(&VOLUME_MOUNT_GROUP_CAPABILITY);
    out
}

/// `GetPluginInfoResponse.name` (field 1), if the bytes carry one.
pub fn plugin_name(response: &[u8]) -> Option<String> {
    top_level_string(response, 1).filter(|n| !n.is_empty())
}

/// A top-level string field (the last occurrence), if present and UTF-8.
pub fn top_level_string(buf: &[u8], number: u64) -> Option<String> {
    let mut value = None;
    for f in fields(buf) {
        let f = f.ok()?;
        if f.number == number && f.wire_type == LEN {
            value = string(f.payload, "string").ok();
        }
    }
    value
}

/// Which CSI request is being read or edited: the field numbers differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    NodeStageVolume,
    NodePublishVolume,
}

impl Call {
    fn capability_field(self) -> u64 {
        match self {
            Call::NodeStageVolume => 4,
            Call::NodePublishVolume => 5,
        }
    }

    fn context_field(self) -> u64 {
        match self {
            Call::NodeStageVolume => 6,
            Call::NodePublishVolume => 8,
        }
    }
}

/// `VolumeCapability.AccessMode.Mode`.
pub mod access_mode {
    pub const UNKNOWN: i32 = 0;
    pub const SINGLE_NODE_WRITER: i32 = 1;
    pub const SINGLE_NODE_READER_ONLY: i32 = 2;
    pub const MULTI_NODE_READER_ONLY: i32 = 3;
    pub const MULTI_NODE_SINGLE_WRITER: i32 = 4;
    pub const MULTI_NODE_MULTI_WRITER: i32 = 5;
    pub const SINGLE_NODE_SINGLE_WRITER: i32 = 6;
    pub const SINGLE_NODE_MULTI_WRITER: i32 = 7;

    /// The spec's name of a mode, for messages.
    pub fn name(mode: i32) -> String {
        match mode {
            UNKNOWN => "UNKNOWN".into(),
            SINGLE_NODE_WRITER => "SINGLE_NODE_WRITER".into(),
            SINGLE_NODE_READER_ONLY => "SINGLE_NODE_READER_ONLY".into(),
            MULTI_NODE_READER_ONLY => "MULTI_NODE_READER_ONLY".into(),
            MULTI_NODE_SINGLE_WRITER => "MULTI_NODE_SINGLE_WRITER".into(),
            MULTI_NODE_MULTI_WRITER => "MULTI_NODE_MULTI_WRITER".into(),
            SINGLE_NODE_SINGLE_WRITER => "SINGLE_NODE_SINGLE_WRITER".into(),
            SINGLE_NODE_MULTI_WRITER => "SINGLE_NODE_MULTI_WRITER".into(),
            other => format!("mode {other}"),
        }
    }

    /// SINGLE_NODE_*: the modes kubelet's ReadWriteOnce check lets through (RWO and RWOP
    /// both arrive as one of them).
    pub fn is_single_node(mode: i32) -> bool {
        matches!(
            mode,
            SINGLE_NODE_WRITER
                | SINGLE_NODE_READER_ONLY
                | SINGLE_NODE_SINGLE_WRITER
                | SINGLE_NODE_MULTI_WRITER
        )
    }

    /// The reader-only modes: the volume is read-only to every pod.
    pub fn is_reader_only(mode: i32) -> bool {
        matches!(mode, SINGLE_NODE_READER_ONLY | MULTI_NODE_READER_ONLY)
    }
}

/// What the proxy needs from a NodeStageVolume or NodePublishVolume request. Fields the
/// request does not carry are empty (proto3 defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeRequest {
    pub volume_id: String,
    pub staging_target_path: String,
    /// Empty for NodeStageVolume.
    pub target_path: String,
    pub readonly: bool,
    /// `access_type` is `block`.
    pub block: bool,
    /// `access_type` is `mount`.
    pub mount: bool,
    pub fs_type: String,
    pub mount_flags: Vec<String>,
    /// `None` when the field is absent (kubelet sends it only with VOLUME_MOUNT_GROUP).
    pub volume_mount_group: Option<String>,
    pub access_mode: i32,
    pub volume_context: BTreeMap<String, String>,
}

/// Reads a NodeStageVolume or NodePublishVolume request. Scalars follow protobuf's "last
/// one wins"; repeated occurrences of a message field merge, as the spec says.
pub fn read_volume_request(call: Call, buf: &[u8]) -> Result<VolumeRequest, WireError> {
    let mut r = VolumeRequest::default();
    for f in fields(buf) {
        let f = f?;
        match (call, f.number, f.wire_type) {
            (_, 1, LEN) => r.volume_id = string(f.payload, "volume_id")?,
            (Call::NodeStageVolume, 3, LEN) | (Call::NodePublishVolume, 3, LEN) => {
                r.staging_target_path = string(f.payload, "staging_target_path")?;
            }
            (Call::NodePublishVolume, 4, LEN) => {
                r.target_path = string(f.payload, "target_path")?;
            }
            (Call::NodePublishVolume, 6, VARINT) => r.readonly = f.varint != 0,
            (_, n, LEN) if n == call.capability_field() => read_capability(f.payload, &mut r)?,
            (_, n, LEN) if n == call.context_field() => {
                let (mut k, mut v) = (String::new(), String::new());
                for e in fields(f.payload) {
                    let e = e?;
                    match (e.number, e.wire_type) {
                        (1, LEN) => k = string(e.payload, "volume_context key")?,
                        (2, LEN) => v = string(e.payload, "volume_context value")?,
                        _ => {}
                    }
                }
                r.volume_context.insert(k, v);
            }
            _ => {}
        }
    }
    Ok(r)
}

fn read_capability(buf: &[u8], r: &mut VolumeRequest) -> Result<(), WireError> {
    for f in fields(buf) {
        let f = f?;
        match (f.number, f.wire_type) {
            (1, LEN) => {
                r.block = true;
                r.mount = false;
            }
            (2, LEN) => {
                r.mount = true;
                r.block = false;
                for m in fields(f.payload) {
                    let m = m?;
                    match (m.number, m.wire_type) {
                        (1, LEN) => r.fs_type = string(m.payload, "fs_type")?,
                        (2, LEN) => r.mount_flags.push(string(m.payload, "mount_flags")?),
                        (3, LEN) => {
                            r.volume_mount_group = Some(string(m.payload, "volume_mount_group")?);
                        }
                        _ => {}
                    }
                }
            }
            (3, LEN) => {
                for a in fields(f.payload) {
                    let a = a?;
                    if a.number == 1 && a.wire_type == VARINT {
                        r.access_mode = a.varint as i32;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// What to take out of a request before the driver sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Strip {
    /// `MountVolume.volume_mount_group`.
    pub volume_mount_group: bool,
    /// A `context=` element of `MountVolume.mount_flags`.
    pub context_flag: bool,
}

/// Whether one `mount_flags` element is the SELinux `context=` option kubelet adds.
pub fn is_context_flag(flag: &str) -> bool {
    flag.starts_with("context=")
}

/// The label of a `context=` option: kubelet quotes it (`context="a:b:c:s0:c1,c2"`).
pub fn context_flag_label(flag: &str) -> Option<&str> {
    let value = flag.strip_prefix("context=")?;
    Some(
        value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value),
    )
}

/// The request with the fields `strip` names removed from `volume_capability.mount`. Only
/// the two enclosing length prefixes are rewritten; when nothing is removed the original
/// bytes come back unchanged.
pub fn strip_request(call: Call, buf: &[u8], strip: Strip) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(buf.len());
    let mut changed = false;
    for f in fields(buf) {
        let f = f?;
        if f.number == call.capability_field() && f.wire_type == LEN {
            if let Some(cap) = strip_capability(f.payload, strip)? {
                put_len_field(&mut out, f.number, &cap);
                changed = true;
                continue;
            }
        }
        out.extend_from_slice(f.raw);
    }
    Ok(if changed { out } else { buf.to_vec() })
}

/// `VolumeCapability` without the stripped fields, or `None` if nothing was stripped.
fn strip_capability(buf: &[u8], strip: Strip) -> Result<Option<Vec<u8>>, WireError> {
    let mut out = Vec::with_capacity(buf.len());
    let mut changed = false;
    for f in fields(buf) {
        let f = f?;
        if f.number == 2 && f.wire_type == LEN {
            if let Some(mount) = strip_mount(f.payload, strip)? {
                put_len_field(&mut out, 2, &mount);
                changed = true;
                continue;
            }
        }
        out.extend_from_slice(f.raw);
    }
    Ok(changed.then_some(out))
}

fn strip_mount(buf: &[u8], strip: Strip) -> Result<Option<Vec<u8>>, WireError> {
    let mut out = Vec::with_capacity(buf.len());
    let mut changed = false;
    for f in fields(buf) {
        let f = f?;
        let drop = match (f.number, f.wire_type) {
            (3, LEN) => strip.volume_mount_group,
            (2, LEN) => {
                strip.context_flag && std::str::from_utf8(f.payload).is_ok_and(is_context_flag)
            }
            _ => false,
        };
        if drop {
            changed = true;
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    Ok(changed.then_some(out))
}

fn put_len_field(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    put_varint(out, (number << 3) | u64::from(LEN));
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// Test and benchmark support: encodes the requests kubelet builds, field by field, so
/// callers can add fields the proxy's own proto does not know.
pub mod encode {
    use super::{put_len_field, put_varint, LEN, VARINT};

    /// A message under construction.
    #[derive(Debug, Clone, Default)]
    pub struct Message(pub Vec<u8>);

    impl Message {
        pub fn new() -> Message {
            Message::default()
        }

        pub fn string(mut self, number: u64, value: &str) -> Message {
            put_len_field(&mut self.0, number, value.as_bytes());
            self
        }

        pub fn bytes(mut self, number: u64, value: &[u8]) -> Message {
            put_len_field(&mut self.0, number, value);
            self
        }

        pub fn message(self, number: u64, inner: Message) -> Message {
            self.bytes(number, &inner.0)
        }

        pub fn varint(mut self, number: u64, value: u64) -> Message {
            put_varint(&mut self.0, (number << 3) | u64::from(VARINT));
            put_varint(&mut self.0, value);
            self
        }

        /// A `map<string, string>` entry.
        pub fn map_entry(self, number: u64, key: &str, value: &str) -> Message {
            self.message(number, Message::new().string(1, key).string(2, value))
        }

        pub fn into_bytes(self) -> Vec<u8> {
            self.0
        }
    }

    /// A `VolumeCapability` with a `MountVolume` as kubelet builds it.
    pub fn mount_capability(
        fs_type: &str,
        mount_flags: &[&str],
        volume_mount_group: Option<&str>,
        access_mode: i32,
    ) -> Message {
        let mut mount = Message::new();
        if !fs_type.is_empty() {
            mount = mount.string(1, fs_type);
        }
        for flag in mount_flags {
            mount = mount.string(2, flag);
        }
        if let Some(g) = volume_mount_group {
            mount = mount.string(3, g);
        }
        let mut cap = Message::new().message(2, mount);
        if access_mode != 0 {
            cap = cap.message(3, Message::new().varint(1, access_mode as u64));
        }
        cap
    }

    /// `LEN` as a wire-type constant, for callers that build tags by hand.
    pub const LEN_WIRE_TYPE: u8 = LEN;
}

#[cfg(test)]
mod tests {
    use super::encode::{mount_capability, Message};
    use super::*;

    fn publish(vmg: Option<&str>, flags: &[&str]) -> Vec<u8> {
        Message::new()
            .string(1, "pv-1")
            .string(3, "/var/lib/kubelet/plugins/x/globalmount")
            .string(
                4,
                "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv-1/mount",
            )
            .message(
                5,
                mount_capability("ext4", flags, vmg, access_mode::SINGLE_NODE_WRITER),
            )
            .map_entry(7, "password", "s3cret")
            .map_entry(8, "volsec.io/fs-group-change-policy", "OnRootMismatch")
            .string(99, "a field from a newer spec")
            .into_bytes()
    }

    #[test]
    fn capability_is_found_and_appended() {
        let without = Message::new()
            .message(1, Message::new().message(1, Message::new().varint(1, 1)))
            .message(1, Message::new().message(1, Message::new().varint(1, 2)))
            .into_bytes();
        assert!(!has_node_capability(&without, VOLUME_MOUNT_GROUP).unwrap());
        let with = with_volume_mount_group(&without);
        assert!(has_node_capability(&with, VOLUME_MOUNT_GROUP).unwrap());
        assert!(has_node_capability(&with, 1).unwrap());
        assert_eq!(&with[..without.len()], &without[..]);
        // An empty response (a driver with no node capabilities) gains exactly one.
        assert!(has_node_capability(&with_volume_mount_group(&[]), 6).unwrap());
    }

    #[test]
    fn publish_request_is_read() {
        let r = read_volume_request(
            Call::NodePublishVolume,
            &publish(Some("2000"), &["noatime"]),
        )
        .unwrap();
        assert_eq!(r.volume_id, "pv-1");
        assert!(r.target_path.ends_with("/mount"));
        assert_eq!(r.fs_type, "ext4");
        assert_eq!(r.mount_flags, vec!["noatime".to_string()]);
        assert_eq!(r.volume_mount_group.as_deref(), Some("2000"));
        assert_eq!(r.access_mode, access_mode::SINGLE_NODE_WRITER);
        assert!(r.mount && !r.block && !r.readonly);
        assert_eq!(
            r.volume_context
                .get("volsec.io/fs-group-change-policy")
                .map(String::as_str),
            Some("OnRootMismatch")
        );
        // secrets (field 7) are not volume_context.
        assert!(!r.volume_context.contains_key("password"));
    }

    #[test]
    fn stripping_changes_only_the_mount_field_and_its_two_length_prefixes() {
        let flag = "context=\"system_u:object_r:container_file_t:s0:c1,c2\"";
        let before = publish(Some("2000"), &["noatime", flag]);
        let after = strip_request(
            Call::NodePublishVolume,
            &before,
            Strip {
                volume_mount_group: true,
                context_flag: true,
            },
        )
        .unwrap();
        let expected = publish(None, &["noatime"]);
        assert_eq!(after, expected);
        let r = read_volume_request(Call::NodePublishVolume, &after).unwrap();
        assert_eq!(r.volume_mount_group, None);
        assert_eq!(r.mount_flags, vec!["noatime".to_string()]);
        // Only the group: the context flag stays.
        let only_group = strip_request(
            Call::NodePublishVolume,
            &before,
            Strip {
                volume_mount_group: true,
                context_flag: false,
            },
        )
        .unwrap();
        assert_eq!(only_group, publish(None, &["noatime", flag]));
    }

    #[test]
    fn nothing_to_strip_returns_the_same_bytes() {
        let before = publish(None, &["noatime"]);
        let after = strip_request(
            Call::NodePublishVolume,
            &before,
            Strip {
                volume_mount_group: true,
                context_flag: true,
            },
        )
        .unwrap();
        assert_eq!(after, before);
    }

    #[test]
    fn stage_uses_field_four() {
        let stage = Message::new()
            .string(1, "pv-1")
            .string(3, "/staging")
            .message(
                4,
                mount_capability("xfs", &[], Some("42"), access_mode::SINGLE_NODE_WRITER),
            )
            .map_entry(6, "k", "v")
            .into_bytes();
        let r = read_volume_request(Call::NodeStageVolume, &stage).unwrap();
        assert_eq!(r.volume_mount_group.as_deref(), Some("42"));
        assert_eq!(r.staging_target_path, "/staging");
        assert_eq!(r.volume_context.get("k").map(String::as_str), Some("v"));
        let stripped = strip_request(
            Call::NodeStageVolume,
            &stage,
            Strip {
                volume_mount_group: true,
                context_flag: false,
            },
        )
        .unwrap();
        let r = read_volume_request(Call::NodeStageVolume, &stripped).unwrap();
        assert_eq!(r.volume_mount_group, None);
        assert_eq!(r.fs_type, "xfs");
    }

    #[test]
    fn block_volumes_and_readonly() {
        let req = Message::new()
            .string(4, "/t")
            .message(
                5,
                Message::new()
                    .message(1, Message::new())
                    .message(3, Message::new().varint(1, 3)),
            )
            .varint(6, 1)
            .into_bytes();
        let r = read_volume_request(Call::NodePublishVolume, &req).unwrap();
        assert!(r.block && !r.mount && r.readonly);
        assert_eq!(r.access_mode, access_mode::MULTI_NODE_READER_ONLY);
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        assert_eq!(
            read_volume_request(Call::NodePublishVolume, &[0x22, 0x05, b'a']),
            Err(WireError::Truncated)
        );
        assert!(matches!(
            read_volume_request(Call::NodePublishVolume, &[0x0f]),
            Err(WireError::BadWireType { .. })
        ));
        assert_eq!(
            read_volume_request(
                Call::NodePublishVolume,
                &[[0x08].as_slice(), &[0xff; 10]].concat()
            ),
            Err(WireError::BadVarint)
        );
        assert!(strip_request(Call::NodePublishVolume, &[0x2a, 0x80], Strip::default()).is_err());
    }

    #[test]
    fn context_labels() {
        assert_eq!(
            context_flag_label("context=\"system_u:object_r:container_file_t:s0:c1,c2\""),
            Some("system_u:object_r:container_file_t:s0:c1,c2")
        );
        assert_eq!(context_flag_label("context=a:b:c:s0"), Some("a:b:c:s0"));
        assert_eq!(context_flag_label("noatime"), None);
        assert!(!is_context_flag("fscontext=x"));
    }

    #[test]
    fn plugin_names() {
        let info = Message::new()
            .string(1, "csi.example.com")
            .string(2, "1.0")
            .into_bytes();
        assert_eq!(plugin_name(&info).as_deref(), Some("csi.example.com"));
        assert_eq!(plugin_name(&[]), None);
    }
}
