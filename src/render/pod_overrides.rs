//! `spec.podOverrides` of a WorkerPool: a patch applied last to the pod template, in the
//! spirit of a strategic merge patch, so users can add a sidecar, an env var or a volume
//! without restating the operator's own.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// Lists merged element by element on a key, by the name of the list's field.
const MERGE_KEYS: &[(&str, &str)] = &[
    ("containers", "name"),
    ("initContainers", "name"),
    ("ephemeralContainers", "name"),
    ("volumes", "name"),
    ("env", "name"),
    ("volumeMounts", "mountPath"),
    ("ports", "containerPort"),
    ("imagePullSecrets", "name"),
    ("hostAliases", "ip"),
];

/// Applies `overrides` to `template`. Maps merge recursively; lists named in
/// [`MERGE_KEYS`] merge by their key (matching elements merge, others are appended);
/// any other value replaces. Fails when the result is not a valid pod template.
pub fn apply(template: &PodTemplateSpec, overrides: &Value) -> Result<PodTemplateSpec, String> {
    if !overrides.is_object() {
        return Err("podOverrides must be a pod template (a map)".into());
    }
    let mut value = serde_json::to_value(template).map_err(|e| e.to_string())?;
    merge(&mut value, overrides, None);
    serde_json::from_value(value)
        .map_err(|e| format!("podOverrides does not give a valid pod template: {e}"))
}

fn merge(base: &mut Value, patch: &Value, field: Option<&str>) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                match base.get_mut(key) {
                    Some(existing) if !value.is_null() => merge(existing, value, Some(key)),
                    Some(_) => {
                        base.remove(key);
                    }
                    None if !value.is_null() => {
                        base.insert(key.clone(), value.clone());
                    }
                    None => {}
                }
            }
        }
        (Value::Array(base), Value::Array(patch)) => {
            match field.and_then(|f| MERGE_KEYS.iter().find(|(name, _)| *name == f)) {
                Some((_, key)) => {
                    for item in patch {
                        let id = item.get(*key);
                        match base.iter_mut().find(|b| id.is_some() && b.get(*key) == id) {
                            Some(existing) => merge(existing, item, None),
                            None => base.push(item.clone()),
                        }
                    }
                }
                None => *base = patch.clone(),
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"a": "1"}},
            "spec": {
                "containers": [{
                    "name": "worker",
                    "image": "grafana/mimir:2.17.0",
                    "env": [{"name": "A", "value": "1"}],
                }],
                "tolerations": [{"key": "x", "operator": "Exists"}],
            }
        }))
        .expect("a pod template")
    }

    #[test]
    fn containers_and_env_merge_by_name() {
        let patched = apply(
            &template(),
            &json!({"spec": {"containers": [
                {"name": "worker", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "3"}]},
                {"name": "sidecar", "image": "busybox"},
            ]}}),
        )
        .expect("valid");
        let spec = patched.spec.expect("spec");
        assert_eq!(spec.containers.len(), 2);
        let env = spec.containers[0].env.clone().expect("env");
        let env: Vec<_> = env
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_deref()))
            .collect();
        assert_eq!(env, [("A", Some("3")), ("B", Some("2"))]);
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some("grafana/mimir:2.17.0")
        );
        assert_eq!(spec.containers[1].name, "sidecar");
    }

    #[test]
    fn other_lists_are_replaced_and_null_removes() {
        let patched = apply(
            &template(),
            &json!({
                "metadata": {"labels": {"a": null, "b": "2"}},
                "spec": {"tolerations": [{"key": "y", "operator": "Exists"}]},
            }),
        )
        .expect("valid");
        let tolerations = patched
            .spec
            .expect("spec")
            .tolerations
            .expect("tolerations");
        assert_eq!(tolerations.len(), 1);
        assert_eq!(tolerations[0].key.as_deref(), Some("y"));
        let labels = patched.metadata.expect("meta").labels.expect("labels");
        assert_eq!(labels.get("b").map(String::as_str), Some("2"));
        assert!(!labels.contains_key("a"));
    }

    #[test]
    fn an_invalid_result_is_an_error_not_a_panic() {
        let error =
            apply(&template(), &json!({"spec": {"containers": "nope"}})).expect_err("invalid");
        assert!(error.contains("podOverrides"), "{error}");
        assert!(apply(&template(), &json!([1])).is_err());
    }
}
