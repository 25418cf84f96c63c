//! The "changes only tighten a key" rule in Rust, against the table its Lua and SQL copies are
//! tested with too (`tests/data/merge_cases.json`).
#![cfg(feature = "serde")]

use serde_json::Value;
use sitequest_auth::{KeyRecord, KeyStore};

include!("data/merge_cases.rs");

fn record(base: &Value, overrides: &Value) -> KeyRecord {
    serde_json::from_value(case_record(base, overrides)).unwrap()
}

#[test]
fn every_case_of_the_shared_table() {
    let table: Value = serde_json::from_str(CASES).unwrap();
    let base = &table["base"];
    let cases = table["cases"].as_array().unwrap();
    assert!(cases.len() >= 15);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let stored = record(base, &case["stored"]);
        let incoming = record(base, &case["incoming"]);
        let expected = record(base, &case["expected"]);
        assert_eq!(stored.merged_with(&incoming), expected, "{name}");
        // The store applies the same rule.
        let store = KeyStore::new();
        store.insert(stored.clone()).unwrap();
        store.insert(incoming.clone()).unwrap();
        assert_eq!(store.get(stored.id()).unwrap(), expected, "{name} (store)");
    }
}
