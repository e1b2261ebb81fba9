//! `training.json`: what the trainer (`training/`, docs/training.md) records beside the model
//! files of a version it wrote, among it the MLflow run that made it. Optional and never a
//! reason to refuse a model: a file that is missing gives nothing, one that is too large, not
//! JSON, or holds odd values gives what is valid in it and a warning.

use serde::Serialize;
use std::io::Read;
use std::path::Path;

/// The file's name in a model directory.
pub const FILE: &str = "training.json";
/// Larger files are not read (the trainer writes under 2 KiB).
const MAX_BYTES: u64 = 64 * 1024;
/// Longest identifier shown (MLflow run ids are 32 hex digits).
const MAX_ID: usize = 64;
/// Longest timestamp shown (RFC 3339 with an offset is 25 characters).
const MAX_TIMESTAMP: usize = 40;

/// Where a version came from, as its `training.json` says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Provenance {
    /// The MLflow run that trained this version (`GET /api/2.0/mlflow/runs/get?run_id=...` on
    /// the tracking server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlflow_run_id: Option<String>,
    /// Its MLflow experiment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlflow_experiment_id: Option<String>,
    /// When the trainer wrote the version (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// [`read`], with a warning in the log when the file is there but gives nothing.
pub fn find(dir: &Path) -> Option<Provenance> {
    read(dir).unwrap_or_else(|why| {
        tracing::warn!("{}: {why}", dir.display());
        None
    })
}

/// `dir`'s `training.json`: `Ok(None)` without one; `Err` with why a present file gave
/// nothing usable. Values that are not plain identifiers are dropped (with `Err` when nothing
/// is left), so that a hand-edited file never puts arbitrary text into `/info`.
pub fn read(dir: &Path) -> Result<Option<Provenance>, String> {
    let path = dir.join(FILE);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{FILE}: cannot read: {e}")),
    };
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{FILE}: cannot read: {e}"))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(format!("{FILE}: over {MAX_BYTES} bytes; not read"));
    }
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{FILE}: invalid JSON: {e}"))?;
    let field = |key: &str, max: usize, allowed: fn(char) -> bool| {
        json.get(key)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty() && s.len() <= max && s.chars().all(allowed))
            .map(str::to_owned)
    };
    let id_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let time_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '+' | '.');
    let provenance = Provenance {
        mlflow_run_id: field("mlflow_run_id", MAX_ID, id_char),
        mlflow_experiment_id: field("mlflow_experiment_id", MAX_ID, id_char),
        created_at: field("created_at", MAX_TIMESTAMP, time_char),
    };
    if provenance == Provenance::default() {
        return Err(format!(
            "{FILE}: no valid mlflow_run_id, mlflow_experiment_id or created_at"
        ));
    }
    Ok(Some(provenance))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_from(text: &[u8]) -> Result<Option<Provenance>, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), text).unwrap();
        read(dir.path())
    }

    #[test]
    fn the_trainers_record_is_read_and_odd_values_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), Ok(None));

        let found = read_from(
            br#"{"format": 1, "version": 2, "mlflow_run_id": "0f3c5e2a9b8d4c1e8f7a6b5c4d3e2f1a",
                "mlflow_experiment_id": "1", "created_at": "2026-12-07T08:30:00+00:00"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            found.mlflow_run_id.as_deref(),
            Some("0f3c5e2a9b8d4c1e8f7a6b5c4d3e2f1a")
        );
        assert_eq!(found.mlflow_experiment_id.as_deref(), Some("1"));
        assert_eq!(
            found.created_at.as_deref(),
            Some("2026-12-07T08:30:00+00:00")
        );

        // Tracking off: the trainer writes nulls; only the time is left.
        let untracked = read_from(
            br#"{"mlflow_run_id": null, "mlflow_experiment_id": null, "created_at": "2026-12-07T08:30:00+00:00"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(untracked.mlflow_run_id, None);

        let odd = read_from(
            br#"{"mlflow_run_id": "<script>alert(1)</script>", "created_at": "2026-12-07"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(odd.mlflow_run_id, None);
        let long = format!(r#"{{"mlflow_run_id": "{}"}}"#, "a".repeat(MAX_ID + 1));
        assert!(read_from(long.as_bytes()).is_err());
    }

    #[test]
    fn a_broken_or_oversized_file_says_why() {
        assert!(read_from(b"{not json")
            .unwrap_err()
            .contains("invalid JSON"));
        let big = vec![b' '; MAX_BYTES as usize + 1];
        assert!(read_from(&big).unwrap_err().contains("not read"));
        assert!(read_from(b"[]").unwrap_err().contains("no valid"));
    }
}
