//! `spec.configOverrides`: merged last, so what the user writes wins.

use serde_json::Value;

/// Merges `overrides` into `base`: maps merge key by key, recursively; any other value
/// (scalars, lists, null) replaces what was there. The overrides must be a map.
pub fn merge(base: &mut Value, overrides: &Value) -> Result<(), String> {
    if !overrides.is_object() {
        return Err("must be a map of configuration keys".into());
    }
    merge_value(base, overrides);
    Ok(())
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
    fn overrides_must_be_a_map() {
        let mut base = json!({"a": 1});
        assert!(merge(&mut base, &json!(["not", "a", "map"])).is_err());
        assert_eq!(base, json!({"a": 1}));
    }
}
