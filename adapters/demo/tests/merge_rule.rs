//! The SQL copy of the "changes only tighten a key" rule (the data file's upsert), against the
//! table its Rust and Lua copies are tested with too (`tests/data/merge_cases.json` at the
//! repository root).

use serde_json::{json, Map, Value};
use sitequest_auth::{ApiKey, KeyRecord};
use sitequest_demo::db::Db;

const CASES: &str = include_str!("../../../tests/data/merge_cases.json");

fn record(base: &Value, overrides: &Value) -> KeyRecord {
    let key = ApiKey::parse(&format!("sq_live_{}", "ab".repeat(32))).unwrap();
    let mut fields: Map<String, Value> = base.as_object().unwrap().clone();
    for (k, v) in overrides.as_object().unwrap() {
        fields.insert(k.clone(), v.clone());
    }
    fields.insert("digest".into(), json!(key.digest()));
    fields.insert("last4".into(), json!(key.last4()));
    serde_json::from_value(Value::Object(fields)).unwrap()
}

#[test]
fn every_case_of_the_shared_table() {
    let table: Value = serde_json::from_str(CASES).unwrap();
    let base = &table["base"];
    for (i, case) in table["cases"].as_array().unwrap().iter().enumerate() {
        let name = case["name"].as_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join(format!("{i}.db"))).unwrap();
        db.upsert(&[&record(base, &case["stored"])]).unwrap();
        db.upsert(&[&record(base, &case["incoming"])]).unwrap();
        let saved = db.load().unwrap();
        assert_eq!(saved, vec![record(base, &case["expected"])], "{name}");
    }
}
