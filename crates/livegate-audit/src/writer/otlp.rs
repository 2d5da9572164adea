//! The OTLP output, as a task: each batch in one OTLP logs export request.
//!
//! A record is a log record whose body is the audit line (the JSON text),
//! whose attributes are the line's fields (`seq`, `tenant`, `outcome`, …;
//! `null` fields are left out, `metadataRemoved` is a list), event name
//! `livegate.audit`, and whose severity follows the outcome: `forwarded`
//! INFO, `rejected` and `client_gone` WARN, `failed` and `panicked` ERROR.
//! Like the Redis sink it is at least once: when the collector's answer to
//! an export is lost, the batch is sent again and its repeated `seq`s show
//! it.

use livegate_telemetry::logs::{Level, OtlpLogs, Record, Value};

use super::{Line, Report, Source, more};
use crate::state::Backoff;

/// Records per export request.
const MAX_BATCH: usize = 512;

/// The event name of every audit log record.
pub(crate) const EVENT: &str = "livegate.audit";

/// The writer task's loop; ends when every sender is gone and the queue
/// is written.
pub(crate) async fn run(mut rx: Source, report: Report, out: OtlpLogs) {
    while let Some(first) = rx.recv().await {
        let batches = more(first, &mut rx, MAX_BATCH);
        let records: Vec<Record> = batches.iter().flat_map(|b| b.iter()).map(record).collect();
        let mut backoff = Backoff::new();
        while let Err(e) = out.export(&records).await {
            // The exporter's error names the transport's failure, never a
            // record's content.
            report.failed(&format!("audit export over OTLP: {e}"));
            tokio::time::sleep(backoff.next()).await;
        }
        report.written(records.len());
    }
}

fn record(line: &Line) -> Record {
    let attributes = match serde_json::from_str::<serde_json::Value>(&line.json) {
        Ok(serde_json::Value::Object(fields)) => fields
            .into_iter()
            .filter_map(|(k, v)| Some((k, value(v)?)))
            .collect(),
        _ => Vec::new(),
    };
    Record {
        time: line.time,
        level: level(line.outcome),
        event: EVENT,
        body: line.json.clone(),
        attributes,
    }
}

fn level(outcome: &str) -> Level {
    match outcome {
        "forwarded" => Level::Info,
        "rejected" | "client_gone" => Level::Warn,
        _ => Level::Error,
    }
}

/// A JSON value as an attribute; `None` for `null`.
fn value(v: serde_json::Value) -> Option<Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Str(s),
        J::Array(items) => Value::List(items.into_iter().filter_map(value).collect()),
        // An audit line has no nested objects; kept as text if one appears.
        J::Object(o) => Value::Str(serde_json::Value::Object(o).to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_attributes_and_the_outcome_the_severity() {
        let line = Line {
            json: r#"{"seq":7,"tenant":"acme","outcome":"rejected","status":429,"liveness_score":null,"upstreamMs":1.5,"metadataRemoved":["exif"]}"#.into(),
            time: std::time::SystemTime::UNIX_EPOCH,
            outcome: "rejected",
            transaction_id: None,
        };
        let r = record(&line);
        assert_eq!(r.body, line.json);
        assert_eq!(r.level, Level::Warn);
        assert_eq!(r.event, "livegate.audit");
        let attr = |k: &str| {
            r.attributes
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(attr("seq"), Some(Value::Int(7)));
        assert_eq!(attr("tenant"), Some(Value::Str("acme".into())));
        assert_eq!(attr("upstreamMs"), Some(Value::Double(1.5)));
        assert_eq!(
            attr("metadataRemoved"),
            Some(Value::List(vec![Value::Str("exif".into())]))
        );
        assert_eq!(attr("liveness_score"), None, "null fields are left out");
        assert_eq!(level("forwarded"), Level::Info);
        assert_eq!(level("failed"), Level::Error);
        assert_eq!(level("panicked"), Level::Error);
        assert_eq!(level("client_gone"), Level::Warn);
    }
}
