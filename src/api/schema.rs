//! Schema helpers the derives cannot express on their own.

use schemars::{Schema, SchemaGenerator, json_schema};

use crate::product::Product;
use crate::product::contract::Combinations;

/// A free-form object kept as written: the API server stores unknown fields under it.
pub fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Kubernetes' quantity grammar (apimachinery's resource.Quantity), so that a size or
/// a resource the API server would refuse in the pod is refused in the pool already.
const QUANTITY: &str = "^[+-]?(([0-9]+([.][0-9]*)?)|([.][0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+([.][0-9]*)?)|([.][0-9]+))))?$";

/// A quantity: an integer, or a string in [`QUANTITY`]'s grammar.
pub fn quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "pattern": QUANTITY,
        "maxLength": 64,
    })
}

/// Compute resources (a container's `resources`), every request and limit a quantity.
pub fn resources(generator: &mut SchemaGenerator) -> Schema {
    let quantities = serde_json::Value::from(quantity(generator));
    json_schema!({
        "type": "object",
        "properties": {
            "requests": {"type": "object", "additionalProperties": quantities.clone(), "maxProperties": 32},
            "limits": {"type": "object", "additionalProperties": quantities, "maxProperties": 32},
            "claims": {
                "type": "array",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            },
        },
    })
}

/// A node selector: label values as Kubernetes accepts them (keys are checked by the
/// API server when the workload is applied).
pub fn node_selector(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
        },
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

/// The JSON name of a catalogue role name (`query-frontend` → `queryFrontend`).
pub(crate) fn json_name(role: &str) -> String {
    let mut parts = role.split('-');
    let mut name = parts.next().unwrap_or_default().to_string();
    for part in parts {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

/// The admission rules of a product's toggle block, from its runtime contract, so that
/// the API refuses exactly the combinations one process cannot run. Each rule is built
/// from the block's own properties, so it cannot drift from them.
fn toggle_rules(schema: &mut Schema, product: Product) {
    let toggles = toggle_list(schema);
    match product.contract().combinations {
        Combinations::ExactlyOne(why) => push_rule(
            schema,
            format!("{toggles}.filter(t, t).size() == 1"),
            &format!(
                "a {product} pool runs exactly one role toggle (use `all` for a monolithic pool): {}",
                why.what
            ),
        ),
        Combinations::AnyBut(refused) => {
            push_rule(
                schema,
                format!("{toggles}.exists(t, t)"),
                "set at least one role toggle to true",
            );
            for r in refused {
                let field = json_name(r.toggle);
                push_rule(
                    schema,
                    format!("!has(self.{field}) || !self.{field}"),
                    &format!("{field} cannot run in a pool: {}", r.why.what),
                );
            }
        }
    }
}

/// Schema transform of the Mimir toggles.
pub fn mimir_toggles(schema: &mut Schema) {
    toggle_rules(schema, Product::Mimir);
}

/// Schema transform of the Loki toggles.
pub fn loki_toggles(schema: &mut Schema) {
    toggle_rules(schema, Product::Loki);
}

/// Schema transform of the Tempo toggles.
pub fn tempo_toggles(schema: &mut Schema) {
    toggle_rules(schema, Product::Tempo);
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_names_are_camel_case() {
        assert_eq!(super::json_name("query-frontend"), "queryFrontend");
        assert_eq!(super::json_name("flusher"), "flusher");
        assert_eq!(super::json_name("overrides-exporter"), "overridesExporter");
    }
}
