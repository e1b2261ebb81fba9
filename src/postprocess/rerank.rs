//! Reranking's arithmetic: a cross-encoder's one logit per (query, document) pair becomes the
//! document's relevance, the sigmoid of the logit as sentence-transformers' `CrossEncoder` and
//! TEI's `/rerank` give it, and the documents are ranked best first.

use super::{transformed, FunctionToApply};

/// One document's place in the ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ranked {
    /// The document's position in the request.
    pub index: usize,
    /// The model's output for the (query, document) pair.
    pub logit: f32,
    /// Its sigmoid: the relevance, between 0 and 1.
    pub score: f32,
}

/// The documents best first from one logit row per document, in the request's order: higher
/// logit first, equal logits in the request's order. An error (a bug: the caller checked the
/// model) when a row has not exactly one logit.
pub(crate) fn rank(logits: &[Vec<f32>]) -> Result<Vec<Ranked>, String> {
    let mut ranked = logits
        .iter()
        .enumerate()
        .map(|(index, row)| match row.as_slice() {
            [logit] => Ok(Ranked {
                index,
                logit: *logit,
                score: transformed(&[*logit], FunctionToApply::Sigmoid)[0],
            }),
            other => Err(format!(
                "a reranker gives one logit per document; document {index} has {}",
                other.len()
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Stable: equal logits keep the request's order.
    ranked.sort_by(|a, b| b.logit.total_cmp(&a.logit));
    Ok(ranked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_logit_with_sigmoid_scores_and_ties_in_request_order() {
        let ranked = rank(&[vec![-1.0], vec![2.0], vec![-1.0], vec![0.0]]).unwrap();
        let order: Vec<usize> = ranked.iter().map(|r| r.index).collect();
        assert_eq!(order, [1, 3, 0, 2]);
        assert!((ranked[0].score - 0.880_797).abs() < 1e-6);
        assert_eq!(ranked[1].score, 0.5);
        assert_eq!(ranked[0].logit, 2.0);
    }

    #[test]
    fn refuses_rows_that_are_not_one_logit() {
        assert!(rank(&[vec![0.1], vec![0.2, 0.3]]).is_err());
        assert!(rank(&[vec![]]).is_err());
        assert_eq!(rank(&[]).unwrap(), vec![]);
    }
}
