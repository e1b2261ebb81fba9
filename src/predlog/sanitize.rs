//! Makes a row storable before it reaches PostgreSQL, so that one client's input can never make
//! the database refuse a batch that holds other clients' rows.
//!
//! - NUL (U+0000), which neither `text` nor `jsonb` accepts, is replaced by U+FFFD (the
//!   replacement character) in texts, labels and `scores` keys: the row keeps its length and
//!   shows where something was replaced. `text_sha256` stays the hash of the text as received.
//! - `request_id` loses its control characters and is cut to [`MAX_REQUEST_ID_CHARS`]: a long
//!   one would pass PostgreSQL's btree row limit on the indexed column. The HTTP layer may
//!   bound ids as well; the log does not depend on it.
//!
//! Each field changed counts once in `sentiment_prediction_log_sanitized_fields_total`.

use super::Row;

/// Longest `request_id` stored, in characters.
pub(crate) const MAX_REQUEST_ID_CHARS: usize = 128;

const NUL: char = '\0';

/// Sanitizes `row` in place; returns how many fields it changed.
pub(super) fn row(row: &mut Row) -> u64 {
    let mut changed = 0;
    let mut count = |was_changed: bool| changed += u64::from(was_changed);
    count(request_id(&mut row.request_id));
    count(row.text.as_mut().is_some_and(replace_nul));
    count(row.text_pair.as_mut().is_some_and(replace_nul));
    count(replace_nul(&mut row.label));
    count(scores_keys(&mut row.scores));
    changed
}

/// Replaces every NUL; true if there was one.
fn replace_nul(text: &mut String) -> bool {
    if !text.contains(NUL) {
        return false;
    }
    *text = text.replace(NUL, "\u{FFFD}");
    true
}

/// Control characters removed, then cut to [`MAX_REQUEST_ID_CHARS`]; true if changed.
fn request_id(id: &mut String) -> bool {
    let fits = id.len() <= MAX_REQUEST_ID_CHARS; // bytes >= chars
    if fits && !id.chars().any(char::is_control) {
        return false;
    }
    let cleaned: String = id
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REQUEST_ID_CHARS)
        .collect();
    let changed = cleaned != *id;
    *id = cleaned;
    changed
}

/// NUL replaced in the keys of a `{"label": score}` object (jsonb refuses `\u0000` in any
/// string); true if a key changed. The scores are numbers and need nothing.
fn scores_keys(scores: &mut serde_json::Value) -> bool {
    let Some(map) = scores.as_object_mut() else {
        return false;
    };
    if !map.keys().any(|k| k.contains(NUL)) {
        return false;
    }
    let old = std::mem::take(map);
    for (mut key, value) in old {
        replace_nul(&mut key);
        map.insert(key, value);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predlog::Task;
    use serde_json::json;

    fn sample() -> Row {
        Row {
            id: uuid::Uuid::nil(),
            request_id: "req-1".into(),
            input_index: 0,
            created_at: std::time::SystemTime::UNIX_EPOCH,
            model_sha256: "ab".into(),
            model_name: "m".into(),
            model_version: "1".into(),
            text: Some("fine".into()),
            text_sha256: "cd".into(),
            text_hash_kind: crate::predlog::HashKind::Sha256,
            text_pair: None,
            text_pair_sha256: None,
            task: Task::TextClassification,
            label: "POSITIVE".into(),
            score: 0.9,
            scores: json!({"POSITIVE": 0.9, "NEGATIVE": 0.1}),
            latency_ms: 1.0,
        }
    }

    #[test]
    fn a_clean_row_is_left_alone() {
        let mut clean = sample();
        assert_eq!(row(&mut clean), 0);
        assert_eq!(clean.request_id, "req-1");
        assert_eq!(clean.text.as_deref(), Some("fine"));
        assert_eq!(clean.scores, sample().scores);
    }

    #[test]
    fn nul_is_replaced_in_texts_labels_and_score_keys() {
        let mut poisoned = sample();
        poisoned.text = Some("nice\0".into());
        poisoned.text_pair = Some("\0pair".into());
        poisoned.label = "spo\0rts".into();
        poisoned.scores = json!({"spo\u{0}rts": 0.75, "politics": 0.25});
        assert_eq!(row(&mut poisoned), 4);
        assert_eq!(poisoned.text.as_deref(), Some("nice\u{FFFD}"));
        assert_eq!(poisoned.text_pair.as_deref(), Some("\u{FFFD}pair"));
        assert_eq!(poisoned.label, "spo\u{FFFD}rts");
        assert_eq!(
            poisoned.scores,
            json!({"spo\u{FFFD}rts": 0.75, "politics": 0.25})
        );
        assert!(!serde_json::to_string(&poisoned.scores)
            .unwrap()
            .contains("\\u0000"));
    }

    #[test]
    fn request_ids_lose_control_characters_and_are_capped() {
        let mut long = sample();
        long.request_id = "é".repeat(3_000);
        assert_eq!(row(&mut long), 1);
        assert_eq!(long.request_id, "é".repeat(MAX_REQUEST_ID_CHARS));

        let mut control = sample();
        control.request_id = "a\0b\r\nc\u{7f}".into();
        assert_eq!(row(&mut control), 1);
        assert_eq!(control.request_id, "abc");

        // Exactly at the cap, multi-byte: kept whole.
        let mut at_cap = sample();
        at_cap.request_id = "ü".repeat(MAX_REQUEST_ID_CHARS);
        assert_eq!(row(&mut at_cap), 0);
        assert_eq!(at_cap.request_id.chars().count(), MAX_REQUEST_ID_CHARS);
    }
}
