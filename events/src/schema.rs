//! JSON Schemas of every event type, generated from the Rust types with schemars, so that an
//! integrator in any language can validate what it receives from NATS or the audit API against
//! what the service actually writes (`GET /api/v1/events/schema` serves [`catalogue`]).
//!
//! The schemas describe the serialised form (what is written, e.g. a holder type as its number,
//! optional fields that may be absent), in JSON Schema 2020-12. An event type's schema is the
//! variant of its context's tagged enum, so it covers the `type` tag kept in the data too; each is
//! self-contained (it carries the definitions it refers to) so it can be used on its own.

use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::claims::ClaimEvent;
use crate::codes::CodeEvent;
use crate::insurees::InsureeEvent;
use crate::registry::RegistryEvent;
use crate::requisitions::RequisitionEvent;
use crate::{DomainEvent, EventMetadata, RecordedEvent};

/// The dialect every schema here is written in.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

fn root_schema<T: schemars::JsonSchema>() -> Value {
    SchemaSettings::draft2020_12().for_serialize().into_generator().into_root_schema_for::<T>().to_value()
}

/// The schema of each event type of one context's enum, keyed by event type name.
pub fn event_types<E: DomainEvent>() -> BTreeMap<String, Value> {
    let root = root_schema::<E>();
    let defs = root.get("$defs").cloned();
    let variants = root.get("oneOf").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = BTreeMap::new();
    for variant in variants {
        let Some(name) = tag_of(&variant) else { continue };
        let mut schema = Map::new();
        schema.insert("$schema".into(), DIALECT.into());
        schema.insert("$id".into(), format!("careledger:{}/{name}", E::CONTEXT).into());
        schema.insert("title".into(), name.clone().into());
        if let Value::Object(fields) = variant {
            schema.extend(fields);
        }
        if let Some(defs) = &defs {
            schema.insert("$defs".into(), defs.clone());
        }
        out.insert(name, Value::Object(schema));
    }
    out
}

/// The `type` tag a variant's schema fixes (`{"properties": {"type": {"const": "..."}}}`), also
/// when the variant's fields come from another type through `allOf`/`$ref`.
fn tag_of(variant: &Value) -> Option<String> {
    let tag = variant.pointer("/properties/type")?;
    tag.get("const").or_else(|| tag.get("enum").and_then(|e| e.get(0))).and_then(Value::as_str).map(String::from)
}

/// The schemas of every context, keyed by context then event type name.
pub fn events() -> BTreeMap<&'static str, BTreeMap<String, Value>> {
    BTreeMap::from([
        (CodeEvent::CONTEXT, event_types::<CodeEvent>()),
        (RegistryEvent::CONTEXT, event_types::<RegistryEvent>()),
        (RequisitionEvent::CONTEXT, event_types::<RequisitionEvent>()),
        (ClaimEvent::CONTEXT, event_types::<ClaimEvent>()),
        (InsureeEvent::CONTEXT, event_types::<InsureeEvent>()),
    ])
}

/// Everything an integrator needs to validate what it receives: the envelope every event travels
/// in (its `data` is one of `events`), the metadata inside it, and one schema per event type.
pub fn catalogue() -> Value {
    json!({
        "dialect": DIALECT,
        "envelope": with_dialect(root_schema::<RecordedEvent>()),
        "metadata": with_dialect(root_schema::<EventMetadata>()),
        "events": events(),
    })
}

fn with_dialect(mut schema: Value) -> Value {
    if let Value::Object(fields) = &mut schema {
        fields.insert("$schema".into(), DIALECT.into());
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_context_has_one_schema_per_type() {
        let events = events();
        let codes: Vec<&str> = events["codes"].keys().map(String::as_str).collect();
        assert_eq!(
            codes,
            ["CodeAssigned", "CodeBatchGenerated", "CodesGenerated", "CodesReserved", "ControlNumberLinked"]
        );
        assert_eq!(events["registry"].len(), 8);
        assert_eq!(events["requisitions"].len(), 2);
        let assigned = &events["codes"]["CodeAssigned"];
        assert_eq!(assigned["$schema"], DIALECT);
        assert_eq!(assigned["properties"]["type"]["const"], "CodeAssigned");
        // the registration's fields come from EquipmentRegistration; its tag is found all the same
        assert!(events["registry"].contains_key("EquipmentRegistered"));
    }

    #[test]
    fn the_envelope_describes_the_metadata() {
        let catalogue = catalogue();
        let envelope = &catalogue["envelope"];
        for field in ["position", "event_id", "stream", "version", "event_type", "data", "metadata", "recorded_at"] {
            assert!(envelope["properties"].get(field).is_some(), "envelope lacks {field}");
        }
        assert_eq!(catalogue["metadata"]["properties"]["correlation_id"]["format"], "uuid");
    }
}
