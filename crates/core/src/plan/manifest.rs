//! Pod, PersistentVolume and CSIDriver manifests, exactly as users write them.
//!
//! People keep manifests as YAML or JSON, often several objects per file (`---`), sometimes
//! as a `kind: List` from `kubectl get -o yaml`. volsec reads them with the Kubernetes API
//! types themselves (k8s-openapi), so a field kubelet reads is read the same way here, and
//! a mistake is reported as one sentence naming the file, the document, the field and what
//! was expected, before anything is decided or walked.

use k8s_openapi::serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::Path;

/// A manifest that cannot be used: one sentence naming the file and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

/// The largest manifest read: the API server's limit on a request body (3 MiB). Parsing
/// costs a hundred times its input in memory; this keeps that bounded.
pub const MAX_MANIFEST_BYTES: usize = 3 << 20;

/// The deepest nesting of flow collections (`[...]`, `{...}`) accepted. Kubernetes objects
/// nest a dozen levels; the YAML parser's time grows with the square of this depth.
pub const MAX_NESTING: usize = 64;

/// Reads `path` and returns its one object of type `T` (Pod, PersistentVolume, CSIDriver).
/// Documents of other kinds in the same file are ignored, so one file can hold them all.
/// Only a regular file of at most [`MAX_MANIFEST_BYTES`] is read: never a FIFO (which
/// would block) or a device (`/dev/zero` never ends).
pub fn load<T: k8s_openapi::Resource + DeserializeOwned>(path: &Path) -> Result<T, ManifestError> {
    let name = path.display().to_string();
    let text = read_bounded(path)
        .map_err(|e| ManifestError(format!("{name}: cannot read the {}: {e}", T::KIND)))?;
    parse(&name, &text)
}

/// The text of a regular file of at most [`MAX_MANIFEST_BYTES`]. Opened with
/// `O_NONBLOCK`, so a FIFO is refused instead of waited on.
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::other(format!(
            "it is {what}; a manifest must be a regular file"
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::other("it is not UTF-8 text; a manifest is YAML or JSON"))
}

fn too_large() -> std::io::Error {
    std::io::Error::other(format!(
        "it is larger than {} MiB, the API server's limit on an object",
        MAX_MANIFEST_BYTES >> 20
    ))
}

/// The deepest nesting of flow collections in `text`, counted without parsing: brackets in
/// quoted scalars and comments do not count (quotes are taken to end with their line).
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for line in text.lines() {
        let mut quote = None;
        let mut prev = b' ';
        for &c in line.as_bytes() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, b'#') if prev == b' ' || prev == b'\t' => break,
                (None, b'"' | b'\'') => quote = Some(c),
                (None, b'[' | b'{') => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                (None, b']' | b'}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
    }
    deepest
}

/// The one object of type `T` in `text`; `file` names the source in errors.
pub fn parse<T: k8s_openapi::Resource + DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ManifestError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError(format!(
            "{file}: cannot read the {}: {}",
            T::KIND,
            too_large()
        )));
    }
    let depth = flow_depth(text);
    if depth > MAX_NESTING {
        return Err(ManifestError(format!(
            "{file}: collections nest {depth} levels deep; a manifest may nest at most {MAX_NESTING}"
        )));
    }
    let docs = documents(file, text)?;
    let mut found = Vec::new();
    let mut matching = Vec::new();
    for doc in &docs {
        match doc.kind() {
            Some(kind) if kind == T::KIND => matching.push(doc),
            Some(kind) => found.push(format!("{kind} ({})", doc.place)),
            None => found.push(format!("an object without kind ({})", doc.place)),
        }
    }
    match matching.as_slice() {
        [doc] => doc.to_typed::<T>(file, text),
        [] if docs.is_empty() => Err(ManifestError(format!(
            "{file}: the file holds no document; expected a {} manifest",
            T::KIND
        ))),
        [] => Err(ManifestError(format!(
            "{file}: field kind: expected a {}, found {}",
            T::KIND,
            found.join(", ")
        ))),
        many => Err(ManifestError(format!(
            "{file}: holds {} {} objects ({}); expected exactly one",
            many.len(),
            T::KIND,
            many.iter()
                .map(|d| format!("{:?}", d.name().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// One object found in a file.
struct Doc {
    value: serde_yaml::Value,
    /// Index of the `---` document it came from (0-based).
    index: usize,
    /// The object is an item of a `kind: List`, not a document of its own.
    in_list: bool,
    /// "document 2", or "document 1, items[3]", for messages.
    place: String,
}

impl Doc {
    fn kind(&self) -> Option<&str> {
        self.value.get("kind")?.as_str()
    }

    fn name(&self) -> Option<String> {
        Some(
            self.value
                .get("metadata")?
                .get("name")?
                .as_str()?
                .to_string(),
        )
    }

    /// Deserializes into `T`. A document of its own is read again from the text so that
    /// errors carry the field path and the line.
    fn to_typed<T: k8s_openapi::Resource + DeserializeOwned>(
        &self,
        file: &str,
        text: &str,
    ) -> Result<T, ManifestError> {
        let api_version = self.value.get("apiVersion").and_then(|v| v.as_str());
        if api_version != Some(T::API_VERSION) {
            return Err(ManifestError(format!(
                "{file}: {}: field apiVersion: expected {:?} for a {}, found {}",
                self.place,
                T::API_VERSION,
                T::KIND,
                api_version.map_or("none".to_string(), |v| format!("{v:?}"))
            )));
        }
        let typed = if self.in_list {
            T::deserialize(self.value.clone())
        } else {
            let doc = serde_yaml::Deserializer::from_str(text)
                .nth(self.index)
                .expect("the document was read once already");
            T::deserialize(doc)
        };
        typed.map_err(|e| {
            ManifestError(format!(
                "{file}: {}: not a valid {}: {e}",
                self.place,
                T::KIND
            ))
        })
    }
}

/// Every object in the file: each `---` document, with `kind: List` expanded.
fn documents(file: &str, text: &str) -> Result<Vec<Doc>, ManifestError> {
    let mut docs = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| {
            ManifestError(format!(
                "{file}: malformed YAML or JSON in document {}: {e}",
                index + 1
            ))
        })?;
        if value.is_null() {
            continue;
        }
        if !value.is_mapping() {
            return Err(ManifestError(format!(
                "{file}: document {} is not an object; expected a Kubernetes manifest with apiVersion and kind",
                index + 1
            )));
        }
        if value.get("kind").and_then(|k| k.as_str()) == Some("List") {
            let items = value
                .get("items")
                .and_then(|i| i.as_sequence())
                .cloned()
                .unwrap_or_default();
            for (i, item) in items.into_iter().enumerate() {
                docs.push(Doc {
                    value: item,
                    index,
                    in_list: true,
                    place: format!("document {}, items[{i}]", index + 1),
                });
            }
            continue;
        }
        docs.push(Doc {
            value,
            index,
            in_list: false,
            place: format!("document {}", index + 1),
        });
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolume, Pod};

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

    #[test]
    fn one_pod_among_other_kinds() {
        let text = format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: pv\nspec: {{}}\n---\n{POD}"
        );
        let pod: Pod = parse("f.yaml", &text).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("p"));
        let pv: PersistentVolume = parse("f.yaml", &text).unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("pv"));
    }

    #[test]
    fn json_and_lists() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c"}]}}]}"#;
        let pod: Pod = parse("f.json", json).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("j"));
    }

    #[test]
    fn errors_name_file_field_and_expectation() {
        let e = parse::<Pod>("bad.yaml", "kind: Pod\nspec: [\n")
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("bad.yaml: malformed YAML") && e.contains("line"),
            "{e}"
        );
        let e = parse::<Pod>("pv.yaml", "apiVersion: v1\nkind: PersistentVolume\n")
            .unwrap_err()
            .0;
        assert!(
            e.contains("field kind: expected a Pod, found PersistentVolume"),
            "{e}"
        );
        let e = parse::<Pod>("p.yaml", "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: c\n    securityContext:\n      runAsUser: many\n")
            .unwrap_err()
            .0;
        assert!(
            e.contains("p.yaml: document 1: not a valid Pod")
                && e.contains("runAsUser")
                && e.contains("line 7"),
            "{e}"
        );
        let e = parse::<Pod>("p.yaml", "apiVersion: v2\nkind: Pod\n")
            .unwrap_err()
            .0;
        assert!(e.contains("field apiVersion: expected \"v1\""), "{e}");
        let e = parse::<Pod>("p.yaml", &format!("{POD}---\n{POD}"))
            .unwrap_err()
            .0;
        assert!(e.contains("holds 2 Pod objects"), "{e}");
        let e = parse::<Pod>("e.yaml", "").unwrap_err().0;
        assert!(e.contains("no document"), "{e}");
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        let e = parse::<Pod>("deep.yaml", &deep).unwrap_err().0;
        assert!(
            e.contains("nest 100000 levels deep") && e.contains("at most 64"),
            "{e}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Brackets in quotes and comments are text, not nesting.
        let quoted = format!(
            "{POD}  # {}\nmetadata:\n  annotations:\n    a: \"{}\"\n",
            "[".repeat(200),
            "{".repeat(200)
        );
        assert!(!parse::<Pod>("q.yaml", &quoted)
            .unwrap_err()
            .0
            .contains("nest"));
        assert_eq!(flow_depth(POD), 0);
        assert_eq!(flow_depth("a: [1, {b: [2]}]\n"), 3);
    }

    #[test]
    fn a_manifest_over_the_cap_is_refused() {
        let big = format!("{POD}{}", "# padding\n".repeat(MAX_MANIFEST_BYTES / 10 + 1));
        let e = parse::<Pod>("big.yaml", &big).unwrap_err().0;
        assert!(e.contains("larger than 3 MiB"), "{e}");
    }
}
