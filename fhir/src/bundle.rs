//! `searchset` Bundles: one page of a search, with its links.

use serde_json::{Value, json};

/// A page of a search's matches and where the next one starts.
pub struct Page {
    /// The search's own URL (the `self` link).
    pub self_url: String,
    /// The next page's URL, when there may be one.
    pub next_url: Option<String>,
    /// The base of every entry's `fullUrl` (`http://host/fhir`).
    pub base: String,
}

/// A `searchset` Bundle of `resources` (each with a `resourceType` and an `id`).
pub fn searchset(resources: Vec<Value>, page: &Page) -> Value {
    let mut links = vec![json!({ "relation": "self", "url": page.self_url })];
    if let Some(next) = &page.next_url {
        links.push(json!({ "relation": "next", "url": next }));
    }
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|resource| {
            let full_url = format!(
                "{}/{}/{}",
                page.base,
                resource["resourceType"].as_str().unwrap_or_default(),
                resource["id"].as_str().unwrap_or_default()
            );
            json!({ "fullUrl": full_url, "resource": resource, "search": { "mode": "match" } })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries })
}
