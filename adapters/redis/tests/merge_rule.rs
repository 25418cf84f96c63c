//! The Lua copy of the "changes only tighten a key" rule, against the table its Rust and SQL
//! copies are tested with too (`tests/data/merge_cases.json` at the repository root). The script
//! does not merge (the writer does, in Rust); it refuses an entry that would loosen the one it
//! replaces. So for each case it must accept the merged record over the stored one, and accept
//! the incoming one exactly when that is already as tight as the merge.

use serde_json::{json, Value};
use sitequest_auth_redis::testing::{RedisServer, PUBLISH_SCRIPT};

include!("../../../tests/data/merge_cases.rs");

/// An entry as the hash holds it; the script reads past the 65-character signature.
fn entry(body: &Value) -> String {
    format!("{}.{}", "0".repeat(64), body)
}

fn as_record(r: &Value) -> String {
    entry(&json!({"kind": "record", "record": r}))
}

/// Writes `stored` as the current entry, then asks the script to replace it with `new`.
async fn replace(
    conn: &mut redis::aio::MultiplexedConnection,
    stored: &str,
    new: &str,
) -> redis::RedisResult<i64> {
    let () = redis::cmd("HSET")
        .arg("h")
        .arg("kid")
        .arg(stored)
        .query_async(conn)
        .await?;
    redis::Script::new(PUBLISH_SCRIPT)
        .key("h")
        .arg("channel")
        .arg("kid")
        .arg(stored)
        .arg(new)
        .arg("0")
        .invoke_async(conn)
        .await
}

fn without_last_use(mut r: Value) -> Value {
    r.as_object_mut().unwrap().remove("last_used_at");
    r
}

#[tokio::test]
async fn every_case_of_the_shared_table() {
    let redis = RedisServer::start();
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let table: Value = serde_json::from_str(CASES).unwrap();
    let base = &table["base"];
    for case in table["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let stored = case_record(base, &case["stored"]);
        let incoming = case_record(base, &case["incoming"]);
        let expected = case_record(base, &case["expected"]);
        assert_eq!(
            replace(&mut conn, &as_record(&stored), &as_record(&expected))
                .await
                .unwrap(),
            1,
            "{name}: the merged record must be accepted"
        );
        // Last use is not the script's to check: it only ever refuses loosening.
        let tight = without_last_use(incoming.clone()) == without_last_use(expected.clone());
        let got = replace(&mut conn, &as_record(&stored), &as_record(&incoming)).await;
        assert_eq!(got.is_ok(), tight, "{name}: {got:?}");
    }
}

#[tokio::test]
async fn tombstones_stay() {
    let redis = RedisServer::start();
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let table: Value = serde_json::from_str(CASES).unwrap();
    let live = as_record(&case_record(&table["base"], &json!({})));
    let removed = |at: u64| {
        entry(&json!({"kind": "removed", "id": "kid_0000000000000000", "removed_at": at}))
    };
    assert!(replace(&mut conn, &removed(100), &live).await.is_err());
    assert!(replace(&mut conn, &removed(100), &removed(200))
        .await
        .is_err());
    assert_eq!(
        replace(&mut conn, &removed(200), &removed(100))
            .await
            .unwrap(),
        1
    );
    assert_eq!(replace(&mut conn, &live, &removed(100)).await.unwrap(), 1);
}
