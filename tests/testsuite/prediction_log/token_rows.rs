//! Token classification in the prediction log: one row per text, `task` token-classification,
//! the entities as answered in `scores` (queryable with jsonb_array_elements), the most
//! confident one's label in `label`.

use super::logged_config;
use crate::common;
use common::postgres::Postgres;
use common::TestServer;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn token_classification_rows_hold_the_entities_as_answered() {
    let pg = Postgres::start();
    let mut config = logged_config(&pg);
    config.model_dir = Some(common::more_fixture("bert-tiny-ner"));
    config.prediction_log_text = sentiment_server::config::LogText::Full;
    let server = TestServer::start(config).await;
    let texts = [
        "Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
        "no entities here at all, just words",
    ];
    let body = json!({"inputs": texts, "parameters": {"aggregation_strategy": "first"}});
    let (status, answers) = server.post("/token-classification", &body).await;
    assert_eq!(status, 200, "{answers}");
    let rows = pg
        .wait_rows(
            "SELECT input_index, text, task, label, score, scores FROM predictions \
             ORDER BY input_index",
            2,
        )
        .await;
    for (row, (text, answer)) in rows
        .iter()
        .zip(texts.iter().zip(answers.as_array().unwrap()))
    {
        assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(*text));
        assert_eq!(row.get::<_, String>(2), "token-classification");
        let stored: Value = row.get(5);
        // The entities as answered (scores stored as f64 of the f32 the answer printed).
        let (stored, answered) = (stored.as_array().unwrap(), answer.as_array().unwrap());
        assert_eq!(stored.len(), answered.len(), "{stored:?} vs {answered:?}");
        for (s, a) in stored.iter().zip(answered) {
            for (key, value) in a.as_object().unwrap() {
                if key == "score" {
                    let d = (s[key].as_f64().unwrap() - value.as_f64().unwrap()).abs();
                    assert!(d < 1e-6, "{s} vs {a}");
                } else {
                    assert_eq!(&s[key], value, "{s} vs {a}");
                }
            }
            assert_eq!(s.as_object().unwrap().len(), a.as_object().unwrap().len());
        }
        let best = answer.as_array().unwrap().iter().max_by(|a, b| {
            a["score"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["score"].as_f64().unwrap())
        });
        let label = best.map_or("", |e| e["entity_group"].as_str().unwrap());
        assert_eq!(row.get::<_, String>(3), label);
    }
    let client = pg.client().await;
    let words: i64 = client
        .query_one(
            "SELECT count(*) FROM predictions, jsonb_array_elements(scores) AS e \
             WHERE task = 'token-classification' AND e ? 'entity_group'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let answered: usize = answers
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_array().unwrap().len())
        .sum();
    assert_eq!(words as usize, answered);
    drop(server);
}
