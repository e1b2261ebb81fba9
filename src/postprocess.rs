//! Post-processing stage: logits to ranked label scores; zero-shot scores in [`zero_shot`],
//! reranking in [`rerank`], entities in [`token_classification`].

pub(crate) mod rerank;
pub(crate) mod token_classification;
pub(crate) mod zero_shot;

use crate::types::ScoreFunction;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// Scores as transformers' pipeline computes them (softmax, or a sigmoid per label for
/// multi-label and single-output models), or the logits themselves when `raw` is set.
pub fn scores(logits: &[f32], function: ScoreFunction, raw: bool) -> Vec<f32> {
    let transform = if raw {
        FunctionToApply::None
    } else {
        function.into()
    };
    transformed(logits, transform)
}

/// The function from logits to scores, as the Inference API's `function_to_apply` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FunctionToApply {
    Sigmoid,
    Softmax,
    /// The logits themselves.
    None,
}

impl From<ScoreFunction> for FunctionToApply {
    /// The model's own function, as transformers' pipeline picks it.
    fn from(function: ScoreFunction) -> Self {
        match function {
            ScoreFunction::Sigmoid => Self::Sigmoid,
            ScoreFunction::Softmax => Self::Softmax,
        }
    }
}

/// `logits` through `function`.
pub(crate) fn transformed(logits: &[f32], function: FunctionToApply) -> Vec<f32> {
    match function {
        FunctionToApply::None => logits.to_vec(),
        FunctionToApply::Sigmoid => logits.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
        FunctionToApply::Softmax => {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            exps.into_iter().map(|e| e / sum).collect()
        }
    }
}

/// Labels with their scores, highest first, cut to `top_k` when given.
pub(crate) fn ranked(labels: &[String], scores: &[f32], top_k: Option<usize>) -> Vec<LabelScore> {
    let mut out: Vec<LabelScore> = labels
        .iter()
        .zip(scores)
        .map(|(label, &score)| LabelScore {
            label: label.clone(),
            score,
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    if let Some(k) = top_k {
        out.truncate(k);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_ranks_highest_first() {
        let s = scores(&[1.0, 3.0, 2.0], ScoreFunction::Softmax, false);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let labels = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let r = ranked(&labels, &s, Some(2));
        assert_eq!(
            r.iter().map(|l| l.label.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
    }

    #[test]
    fn sigmoid_is_per_label_and_raw_returns_logits() {
        let s = scores(&[0.0, 2.0], ScoreFunction::Sigmoid, false);
        assert!((s[0] - 0.5).abs() < 1e-6 && (s[1] - 0.880797).abs() < 1e-5);
        assert_eq!(
            scores(&[-1.5, 2.0], ScoreFunction::Softmax, true),
            vec![-1.5, 2.0]
        );
    }
}
