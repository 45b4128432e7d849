//! Schema helpers the derives cannot express on their own.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A free-form object kept as written: the API server stores unknown fields under it.
pub fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The JSON names of an object schema's properties, in schema order.
fn property_names(schema: &Schema) -> Vec<String> {
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// CEL list of the object's boolean toggles, each `true` only when set and true.
fn toggle_list(schema: &Schema) -> String {
    let toggles: Vec<String> = property_names(schema)
        .iter()
        .map(|name| format!("(has(self.{name}) && self.{name})"))
        .collect();
    format!("[{}]", toggles.join(", "))
}

fn push_rule(schema: &mut Schema, rule: String, message: &str) {
    let rule = serde_json::json!({ "rule": rule, "message": message });
    match schema
        .get_mut("x-kubernetes-validations")
        .and_then(|v| v.as_array_mut())
    {
        Some(rules) => rules.push(rule),
        None => {
            schema.insert("x-kubernetes-validations".into(), serde_json::json!([rule]));
        }
    }
}

/// Schema transform for role toggle blocks: at least one toggle must be true.
/// The rule is built from the block's own properties, so it cannot drift from them.
pub fn at_least_one_toggle(schema: &mut Schema) {
    let rule = format!("{}.exists(t, t)", toggle_list(schema));
    push_rule(schema, rule, "set at least one role toggle to true");
}

/// Schema transform for role toggle blocks where a worker runs exactly one role (Tempo).
pub fn exactly_one_toggle(schema: &mut Schema) {
    let rule = format!("{}.filter(t, t).size() == 1", toggle_list(schema));
    push_rule(
        schema,
        rule,
        "tempo workers run exactly one role: set exactly one toggle to true (use `all` for a monolithic pool)",
    );
}
