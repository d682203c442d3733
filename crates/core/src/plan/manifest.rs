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

/// Reads `path` and returns its one object of type `T` (Pod, PersistentVolume, CSIDriver).
/// Documents of other kinds in the same file are ignored, so one file can hold them all.
pub fn load<T: k8s_openapi::Resource + DeserializeOwned>(path: &Path) -> Result<T, ManifestError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ManifestError(format!("{name}: cannot read the {}: {e}", T::KIND)))?;
    parse(&name, &text)
}

/// The one object of type `T` in `text`; `file` names the source in errors.
pub fn parse<T: k8s_openapi::Resource + DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ManifestError> {
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
}
