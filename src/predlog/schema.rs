//! Database schema, versioned: migrations run in order on every (re)connect, once each.

use tokio_postgres::Client;

/// (version, description, SQL). Append only: a released migration is never edited.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
    1,
    "predictions table",
    "CREATE TABLE predictions (
        id            uuid        PRIMARY KEY,
        request_id    text        NOT NULL,
        input_index   integer     NOT NULL,
        created_at    timestamptz NOT NULL,
        model_sha256  text        NOT NULL,
        text          text,
        text_sha256   text        NOT NULL,
        label         text        NOT NULL,
        score         real        NOT NULL,
        scores        jsonb       NOT NULL,
        latency_ms    real        NOT NULL
    );
    CREATE INDEX predictions_created_at ON predictions (created_at);
    CREATE INDEX predictions_request_id ON predictions (request_id);
    COMMENT ON COLUMN predictions.id IS 'Made by the server per row: a write retried after an ambiguous failure is not stored twice';",
    ),
    (
        2,
        "text pairs and zero-shot rows",
        // IF NOT EXISTS: harmless where someone added the columns by hand. Old rows get NULL
        // pairs and the task they had, text classification.
        "ALTER TABLE predictions
        ADD COLUMN IF NOT EXISTS text_pair        text,
        ADD COLUMN IF NOT EXISTS text_pair_sha256 text,
        ADD COLUMN IF NOT EXISTS task             text NOT NULL DEFAULT 'text-classification';
    COMMENT ON COLUMN predictions.text_pair IS 'Second text of a text pair (with --prediction-log-text full); NULL for a single text';
    COMMENT ON COLUMN predictions.task IS 'text-classification: label and scores are the model''s labels; zero-shot-classification: the request''s candidate labels, one row per input';",
    ),
    (
        3,
        "model name and version",
        // Rows from before a model repository have NULL: model_sha256 identifies their model.
        "ALTER TABLE predictions
        ADD COLUMN IF NOT EXISTS model_name    text,
        ADD COLUMN IF NOT EXISTS model_version text;
    CREATE INDEX IF NOT EXISTS predictions_model ON predictions (model_name, model_version);
    COMMENT ON COLUMN predictions.model_name IS 'The model as routes name it (/v2/models/<name>); NULL on rows written before version 3';",
    ),
    (
        4,
        "text hash kind",
        // Every row written before this version holds a plain SHA-256, hence the default (it
        // also fits a server of the previous release writing after this migration).
        "ALTER TABLE predictions
        ADD COLUMN IF NOT EXISTS text_hash_kind text NOT NULL DEFAULT 'sha256';
    COMMENT ON COLUMN predictions.text_hash_kind IS 'What text_sha256 and text_pair_sha256 hold: sha256 (plain, guessable for short texts) or hmac-sha256 (keyed with --prediction-log-hash-key-file)';",
    ),
    (
        5,
        "task comment: rerank and token-classification rows",
        // Only the comment changes: rows of the two tasks fit the columns as they are.
        "COMMENT ON COLUMN predictions.task IS 'What label, score and scores hold. text-classification: the model''s best label, its probability, every label''s probability; zero-shot-classification: the request''s candidate labels, one row per input; rerank: one row per request, text the query, text_pair the best document, label its index, score its relevance, scores the ten best documents'' relevance keyed by index; token-classification: one row per text, label the most confident entity''s label (empty when none), score its score, scores the entities as answered (a JSON list)';",
    ),
];

/// Any constant: serialises replicas that migrate the same database at the same time.
const MIGRATION_LOCK: i64 = 0x5e27_1e47;

pub(super) async fn migrate(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    let result = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS sentiment_schema_migrations (
                    version     integer PRIMARY KEY,
                    description text        NOT NULL,
                    applied_at  timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await?;
        let applied: Vec<i32> = client
            .query("SELECT version FROM sentiment_schema_migrations", &[])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for &(version, description, sql) in MIGRATIONS {
            if applied.contains(&version) {
                continue;
            }
            client.batch_execute(sql).await?;
            client
                .execute(
                    "INSERT INTO sentiment_schema_migrations (version, description) VALUES ($1, $2)",
                    &[&version, &description],
                )
                .await?;
            tracing::info!(version, description, "prediction log: migration applied");
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => client.batch_execute("COMMIT").await,
        Err(error) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(error)
        }
    }
}
