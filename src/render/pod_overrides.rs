//! `spec.podOverrides` of a WorkerPool: a pod template merged last onto the operator's,
//! with Kubernetes' own merge strategies (k8s-openapi's `DeepMerge`): maps merge,
//! `containers`, `volumes`, `env`, ... merge by their key, atomic lists replace.

use k8s_openapi::DeepMerge;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

use super::RenderError;

/// Merges `overrides`, those of `pool`, onto `template`. Fails when `overrides` is not a
/// pod template.
pub fn apply(
    pool: &str,
    template: &PodTemplateSpec,
    overrides: &Value,
) -> Result<PodTemplateSpec, RenderError> {
    let patch: PodTemplateSpec = serde_json::from_value(overrides.clone()).map_err(|e| {
        RenderError::InvalidPodOverrides {
            pool: pool.to_string(),
            message: e.to_string(),
        }
    })?;
    let mut merged = template.clone();
    merged.merge_from(patch);
    Ok(merged)
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
            "p",
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
    fn atomic_lists_are_replaced_and_maps_merge() {
        let patched = apply(
            "p",
            &template(),
            &json!({
                "metadata": {"labels": {"b": "2"}},
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
        assert_eq!(labels.get("a").map(String::as_str), Some("1"));
        assert_eq!(labels.get("b").map(String::as_str), Some("2"));
    }

    #[test]
    fn an_invalid_patch_is_an_error_not_a_panic() {
        let error =
            apply("p", &template(), &json!({"spec": {"containers": "nope"}})).expect_err("invalid");
        assert_eq!(error.reason(), crate::api::Reason::InvalidPodOverrides);
        assert!(error.to_string().contains("podOverrides"), "{error}");
        assert!(apply("p", &template(), &json!([1])).is_err());
    }
}
