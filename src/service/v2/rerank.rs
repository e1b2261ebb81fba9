//! Reranking through the Open Inference Protocol, for a cross-encoder (a sequence classifier
//! with one output): the inputs `query` (BYTES, one element) and `texts` (BYTES, the
//! documents) instead of `text`; the outputs `score` (FP32 `[n]`, each text's relevance, the
//! sigmoid of its logit, in the request's order), `logit` (FP32 `[n]`, the logits, only when
//! asked for) and `ranking` (INT64 `[n]`, the texts' indices best first). Computed as
//! `/rerank` computes it ([`crate::service::rerank`]); every validation error is 400.

use super::inputs::named_inputs;
use super::outputs::named_outputs;
use super::{OutputTensor, TensorData};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::service::rerank::rerank;
use crate::service::Call;
use crate::state::AppState;
use crate::types::Truncation;
use serde_json::{Map, Value};

/// The query input: one string.
pub(crate) const QUERY_INPUT: &str = "query";
/// The documents input.
pub(crate) const TEXTS_INPUT: &str = "texts";

/// A rerank output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RerankOutput {
    Score,
    Logit,
    Ranking,
}

impl RerankOutput {
    const ALL: [RerankOutput; 3] = [Self::Score, Self::Logit, Self::Ranking];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Score => "score",
            Self::Logit => "logit",
            Self::Ranking => "ranking",
        }
    }
}

/// A request is a rerank when one of its inputs is `query` or `texts`.
pub(crate) fn is_rerank<'a>(mut names: impl Iterator<Item = &'a str>) -> bool {
    names.any(|name| name == QUERY_INPUT || name == TEXTS_INPUT)
}

/// 400 unless the inputs are exactly `query` and `texts`, both BYTES; returns them in that
/// order.
pub(crate) fn rerank_inputs<T>(
    inputs: Vec<T>,
    name_and_type: impl Fn(&T) -> (&str, &str),
) -> Result<(T, T), ApiError> {
    let (query, texts) = named_inputs(inputs, name_and_type, (QUERY_INPUT, TEXTS_INPUT), |name| {
        format!("unknown input `{name}` in a rerank request, which takes `{QUERY_INPUT}` and `{TEXTS_INPUT}`")
    })?;
    match (query, texts) {
        (Some(query), Some(texts)) => Ok((query, texts)),
        _ => Err(ApiError::BadRequest(format!(
            "a rerank request has the inputs `{QUERY_INPUT}` (one string) and `{TEXTS_INPUT}` \
             (the documents)"
        ))),
    }
}

/// One requested rerank output, in binary form or not.
#[derive(Debug)]
pub(crate) struct WantedRerank {
    pub output: RerankOutput,
    pub binary: bool,
}

/// The requested outputs in order; `score` and `ranking` when none are named.
pub(crate) fn requested(
    outputs: Vec<(String, Option<Map<String, Value>>)>,
    binary_default: bool,
) -> Result<Vec<WantedRerank>, ApiError> {
    if outputs.is_empty() {
        return Ok([RerankOutput::Score, RerankOutput::Ranking]
            .into_iter()
            .map(|output| WantedRerank {
                output,
                binary: binary_default,
            })
            .collect());
    }
    let there_are = "a rerank request has `score`, `logit` and `ranking`";
    let chosen = named_outputs(
        outputs,
        &RerankOutput::ALL,
        RerankOutput::name,
        there_are,
        binary_default,
    )?;
    Ok(chosen
        .into_iter()
        .map(|named| WantedRerank {
            output: named.output,
            binary: named.binary,
        })
        .collect())
}

/// Ranks `texts` against the one string of `query` and computes the `wanted` outputs.
pub(crate) async fn infer(
    state: &AppState,
    engine: &Engine,
    call: &Call<'_>,
    query: Vec<String>,
    texts: Vec<String>,
    wanted: Vec<WantedRerank>,
) -> Result<Vec<OutputTensor>, ApiError> {
    let [query] = <[String; 1]>::try_from(query).map_err(|q| {
        ApiError::BadRequest(format!(
            "input `{QUERY_INPUT}` must hold one string, not {}",
            q.len()
        ))
    })?;
    let reranked = rerank(
        state,
        engine,
        call,
        &query,
        &texts,
        TEXTS_INPUT,
        Truncation::LongestFirst,
    )
    .await
    .map_err(ApiError::validation_as_bad_request)?;
    let n = texts.len();
    let (mut scores, mut logits) = (vec![0f32; n], vec![0f32; n]);
    for r in &reranked.ranked {
        scores[r.index] = r.score;
        logits[r.index] = r.logit;
    }
    let ranking: Vec<i64> = reranked.ranked.iter().map(|r| r.index as i64).collect();
    Ok(wanted
        .into_iter()
        .map(|wanted| {
            let (datatype, data) = match wanted.output {
                RerankOutput::Score => ("FP32", TensorData::Fp32(scores.clone())),
                RerankOutput::Logit => ("FP32", TensorData::Fp32(logits.clone())),
                RerankOutput::Ranking => ("INT64", TensorData::Int64(ranking.clone())),
            };
            OutputTensor {
                name: wanted.output.name(),
                datatype,
                shape: vec![n],
                data,
                binary: wanted.binary,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rerank_requests_have_query_and_texts_only() {
        fn get<'a>(t: &'a (&'static str, &'static str)) -> (&'a str, &'a str) {
            (t.0, t.1)
        }
        let named = |names: &[&'static str]| -> Vec<(&'static str, &'static str)> {
            names.iter().map(|&n| (n, "BYTES")).collect()
        };
        assert!(is_rerank(["text", "texts"].into_iter()));
        assert!(!is_rerank(["text", "text_pair"].into_iter()));
        let (q, t) = rerank_inputs(named(&[TEXTS_INPUT, QUERY_INPUT]), get).unwrap();
        assert_eq!((q.0, t.0), (QUERY_INPUT, TEXTS_INPUT));
        let bad: [&[&str]; 4] = [
            &[QUERY_INPUT],
            &[TEXTS_INPUT],
            &[QUERY_INPUT, TEXTS_INPUT, "text"],
            &[QUERY_INPUT, QUERY_INPUT, TEXTS_INPUT],
        ];
        for bad in bad {
            assert!(rerank_inputs(named(bad), get).is_err(), "{bad:?}");
        }
        assert!(rerank_inputs(vec![(QUERY_INPUT, "BYTES"), (TEXTS_INPUT, "FP32")], get).is_err());
    }

    #[test]
    fn outputs_default_to_score_and_ranking_and_unknown_ones_are_refused() {
        let names = |w: Vec<WantedRerank>| w.iter().map(|w| w.output.name()).collect::<Vec<_>>();
        assert_eq!(
            names(requested(vec![], false).unwrap()),
            ["score", "ranking"]
        );
        let asked = vec![("logit".to_string(), None), ("ranking".to_string(), None)];
        assert_eq!(names(requested(asked, true).unwrap()), ["logit", "ranking"]);
        assert!(requested(vec![("label".into(), None)], false).is_err());
        let twice = vec![("score".to_string(), None), ("score".to_string(), None)];
        assert!(requested(twice, false).is_err());
    }
}
