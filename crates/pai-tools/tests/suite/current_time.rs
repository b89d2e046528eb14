use jiff::Timestamp;
use pai_tools::ToolError;

use super::support::{Sandbox, call, text};

#[tokio::test]
async fn current_time_gives_local_and_utc_iso_timestamps_of_the_same_instant() {
    let cx = Sandbox::new().cx();
    let before = Timestamp::now().as_second();
    let out = text("current_time", serde_json::json!({}), &cx).await;
    let after = Timestamp::now().as_second();

    let field = |name: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no '{name}:' line in\n{out}"))
            .to_string()
    };
    let local = field("local");
    let local_iso = local.split(' ').next().unwrap();
    let local: Timestamp = local_iso.parse().unwrap();
    let utc_text = field("utc");
    assert!(utc_text.ends_with('Z'), "{utc_text}");
    let utc: Timestamp = utc_text.parse().unwrap();
    let unix: i64 = field("unix").parse().unwrap();

    assert_eq!(local, utc);
    assert_eq!(utc.as_second(), unix);
    assert!(
        (before..=after).contains(&unix),
        "{before} <= {unix} <= {after}"
    );
    // ISO 8601 with an explicit offset, whole seconds.
    assert_eq!(
        local_iso.len(),
        "2025-01-01T00:00:00+00:00".len(),
        "{local_iso}"
    );
}

#[tokio::test]
async fn current_time_takes_no_arguments_but_accepts_null() {
    let cx = Sandbox::new().cx();
    assert!(
        call("current_time", serde_json::Value::Null, &cx)
            .await
            .is_ok()
    );
    assert!(matches!(
        call("current_time", serde_json::json!({ "zone": "UTC" }), &cx).await,
        Err(ToolError::InvalidArguments(_))
    ));
}
