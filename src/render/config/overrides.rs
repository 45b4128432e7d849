//! `spec.configOverrides`: merged last, so what the user writes wins.

use serde_json::Value;

/// Keys that hold object-storage credentials in the products' configurations. Those
/// reach workers only from the storage Secret, as environment variables: overridden
/// here they would sit in a ConfigMap for anyone who can read one.
const CREDENTIAL_KEYS: &[&str] = &[
    "access_key_id",
    "secret_access_key",
    "access_key",
    "secret_key",
    "session_token",
    "account_key",
    "sas_token",
];

/// Merges `overrides` into `base`: maps merge key by key, recursively; any other value
/// (scalars, lists, null) replaces what was there. The overrides must be a map, and
/// must not set a credential.
pub fn merge(base: &mut Value, overrides: &Value) -> Result<(), String> {
    if !overrides.is_object() {
        return Err("must be a map of configuration keys".into());
    }
    if let Some(path) = credential(overrides, "") {
        return Err(format!(
            "{path} is a credential: it is read from the storage Secret, never from configOverrides (which end up in a ConfigMap)"
        ));
    }
    merge_value(base, overrides);
    Ok(())
}

/// The dotted path of the first credential key set in `value`, if any.
fn credential(value: &Value, prefix: &str) -> Option<String> {
    let Value::Object(map) = value else {
        return None;
    };
    map.iter().find_map(|(key, value)| {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if CREDENTIAL_KEYS.contains(&key.as_str()) && !value.is_null() {
            Some(path)
        } else {
            credential(value, &path)
        }
    })
}

fn merge_value(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                match base.get_mut(key) {
                    Some(existing) => merge_value(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overrides) => *base = overrides.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_merge_and_everything_else_replaces() {
        let mut base = json!({
            "server": {"http_listen_port": 8080, "log_level": "info"},
            "memberlist": {"join_members": ["a", "b"]},
        });
        let overrides = json!({
            "server": {"log_level": "debug"},
            "memberlist": {"join_members": ["c"]},
            "limits": {"max_global_series_per_user": 0},
        });
        merge(&mut base, &overrides).expect("a map");
        assert_eq!(
            base,
            json!({
                "server": {"http_listen_port": 8080, "log_level": "debug"},
                "memberlist": {"join_members": ["c"]},
                "limits": {"max_global_series_per_user": 0},
            })
        );
    }

    #[test]
    fn overrides_may_not_set_a_credential() {
        let mut base = json!({"common": {"storage": {"s3": {"bucket_name": "b"}}}});
        let stolen = json!({"common": {"storage": {"s3": {"secret_access_key": "x"}}}});
        let error = merge(&mut base, &stolen).expect_err("a credential");
        assert!(
            error.starts_with("common.storage.s3.secret_access_key is a credential"),
            "{error}"
        );
        assert_eq!(
            base,
            json!({"common": {"storage": {"s3": {"bucket_name": "b"}}}}),
            "nothing merged"
        );
    }

    #[test]
    fn overrides_must_be_a_map() {
        let mut base = json!({"a": 1});
        assert!(merge(&mut base, &json!(["not", "a", "map"])).is_err());
        assert_eq!(base, json!({"a": 1}));
    }
}
