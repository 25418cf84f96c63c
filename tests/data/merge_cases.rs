// The shared reading of `merge_cases.json`, `include!`d by the merge-rule tests of core, the
// Redis backend and the demo (each crate's tests are a crate of their own): one way to build a
// case's record, whichever copy of the rule is under test.

/// The table of cases.
const CASES: &str = include_str!("merge_cases.json");

/// The base record with `overrides` applied, as JSON, for a fixed key.
fn case_record(base: &serde_json::Value, overrides: &serde_json::Value) -> serde_json::Value {
    let key = sitequest_auth::ApiKey::parse(&format!("sq_live_{}", "ab".repeat(32))).unwrap();
    let mut fields = base.as_object().unwrap().clone();
    for (k, v) in overrides.as_object().unwrap() {
        fields.insert(k.clone(), v.clone());
    }
    fields.insert("digest".into(), serde_json::json!(key.digest()));
    fields.insert("last4".into(), serde_json::json!(key.last4()));
    serde_json::Value::Object(fields)
}
