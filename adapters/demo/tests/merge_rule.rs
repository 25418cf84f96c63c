//! The SQL copy of the "changes only tighten a key" rule (the data file's upsert), against the
//! table its Rust and Lua copies are tested with too (`tests/data/merge_cases.json` at the
//! repository root).

use serde_json::Value;
use sitequest_auth::KeyRecord;
use sitequest_demo::db::Db;

include!("../../../tests/data/merge_cases.rs");

fn record(base: &Value, overrides: &Value) -> KeyRecord {
    serde_json::from_value(case_record(base, overrides)).unwrap()
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
