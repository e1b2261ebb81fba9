//! Zero-shot classification's arithmetic, as transformers' `ZeroShotClassificationPipeline`
//! does it: each candidate label put into a hypothesis, the NLI model's logits for (sequence,
//! hypothesis) turned into one score per label, the labels ranked.

use super::{transformed, FunctionToApply};
use serde::Serialize;

/// One sequence's answer, in the Hugging Face Inference API's shape: the candidate labels
/// best first, and their scores in the same order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ZeroShotOutput {
    pub sequence: String,
    pub labels: Vec<String>,
    pub scores: Vec<f32>,
}

/// Where an NLI model keeps entailment and contradiction among its logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NliLabels {
    pub entailment: usize,
    pub contradiction: Option<usize>,
}

impl NliLabels {
    /// From the model's labels in id order. Entailment is the first whose name, lowercased,
    /// starts with `entail` (transformers' rule); contradiction the first that starts with
    /// `contradict`, or on a two-label model (`entailment`/`not_entailment`) the other label,
    /// which is where transformers' positional rule lands too.
    pub(crate) fn of(labels: &[String]) -> Result<Self, String> {
        let starts = |prefix: &str| {
            labels
                .iter()
                .position(|l| l.to_lowercase().starts_with(prefix))
        };
        let Some(entailment) = starts("entail") else {
            return Err(format!(
                "zero-shot classification needs an NLI model, one of whose labels starts with \
                 \"entail\"; this model's labels are {}",
                labels.join(", ")
            ));
        };
        let contradiction = starts("contradict")
            .or_else(|| (labels.len() == 2).then_some(if entailment == 0 { 1 } else { 0 }));
        Ok(Self {
            entailment,
            contradiction,
        })
    }
}

/// How one sequence's logits become label scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scoring {
    /// Exactly one label is true: a softmax of the entailment logits across the labels.
    SingleLabel { entailment: usize },
    /// Each label on its own (`multi_label`, or a single candidate label): a softmax over
    /// [contradiction, entailment] per label, its entailment share.
    PerLabel {
        entailment: usize,
        contradiction: usize,
    },
}

impl Scoring {
    /// The scoring transformers picks for `labels` candidate labels; per-label scoring needs a
    /// contradiction label.
    pub(crate) fn of(nli: NliLabels, multi_label: bool, labels: usize) -> Result<Self, String> {
        if !multi_label && labels > 1 {
            return Ok(Self::SingleLabel {
                entailment: nli.entailment,
            });
        }
        let contradiction = nli.contradiction.ok_or_else(|| {
            "scoring each candidate label on its own (`multi_label`, or a single candidate \
             label) needs a contradiction label, one that starts with \"contradict\"; this \
             model has none"
                .to_string()
        })?;
        Ok(Self::PerLabel {
            entailment: nli.entailment,
            contradiction,
        })
    }

    /// One score per candidate label from the logits of the sequence paired with each label's
    /// hypothesis, in label order.
    pub(crate) fn scores(self, logits: &[Vec<f32>]) -> Result<Vec<f32>, String> {
        let logit = |row: &Vec<f32>, i: usize| {
            row.get(i)
                .copied()
                .ok_or_else(|| format!("the model gave {} logits, not {}", row.len(), i + 1))
        };
        match self {
            Self::SingleLabel { entailment } => {
                let entailed = logits
                    .iter()
                    .map(|row| logit(row, entailment))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(transformed(&entailed, FunctionToApply::Softmax))
            }
            Self::PerLabel {
                entailment,
                contradiction,
            } => logits
                .iter()
                .map(|row| {
                    let pair = [logit(row, contradiction)?, logit(row, entailment)?];
                    Ok(transformed(&pair, FunctionToApply::Softmax)[1])
                })
                .collect(),
        }
    }
}

/// The labels and their scores, highest first. Ties keep transformers' order (numpy's
/// ascending argsort, reversed: the later label first).
pub(crate) fn ranked(labels: &[String], scores: &[f32]) -> (Vec<String>, Vec<f32>) {
    let mut order: Vec<usize> = (0..labels.len().min(scores.len())).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    order.reverse();
    (
        order.iter().map(|&i| labels[i].clone()).collect(),
        order.iter().map(|&i| scores[i]).collect(),
    )
}

/// A hypothesis template: the text around the one `{}` where the label goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    before: String,
    after: String,
}

impl Template {
    /// Parses `template` as Python's `str.format` reads it with one argument (transformers
    /// calls `template.format(label)`): one `{}`, and `{{`/`}}` for literal braces. Anything
    /// else in braces is refused, as is a template without `{}` (transformers refuses it too).
    pub(crate) fn parse(template: &str) -> Result<Self, String> {
        let mut parts = (String::new(), String::new());
        let mut placeholders = 0;
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            let part = if placeholders == 0 {
                &mut parts.0
            } else {
                &mut parts.1
            };
            match (c, chars.peek()) {
                ('{', Some('{')) | ('}', Some('}')) => {
                    part.push(c);
                    chars.next();
                }
                ('{', Some('}')) => {
                    placeholders += 1;
                    chars.next();
                }
                ('{', _) | ('}', _) => {
                    return Err(format!(
                        "`hypothesis_template` {template:?} has a brace that is not `{{}}`: \
                         write `{{}}` where the label goes and `{{{{` or `}}}}` for a literal brace"
                    ))
                }
                _ => part.push(c),
            }
        }
        match placeholders {
            1 => Ok(Self {
                before: parts.0,
                after: parts.1,
            }),
            0 => Err(format!(
                "`hypothesis_template` {template:?} has no `{{}}` where the label goes, e.g. \
                 \"This example is {{}}.\""
            )),
            n => Err(format!(
                "`hypothesis_template` {template:?} has {n} `{{}}`; it takes one, for the label"
            )),
        }
    }

    /// The hypothesis for `label`.
    pub(crate) fn fill(&self, label: &str) -> String {
        format!("{}{label}{}", self.before, self.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nli_labels_are_found_by_name_and_a_sentiment_model_is_refused() {
        let mnli = NliLabels::of(&labels(&["CONTRADICTION", "neutral", "Entailment"])).unwrap();
        assert_eq!((mnli.entailment, mnli.contradiction), (2, Some(0)));
        let two = NliLabels::of(&labels(&["entailment", "not_entailment"])).unwrap();
        assert_eq!((two.entailment, two.contradiction), (0, Some(1)));
        let odd = NliLabels::of(&labels(&["neutral", "entails", "other"])).unwrap();
        assert_eq!((odd.entailment, odd.contradiction), (1, None));
        let error = NliLabels::of(&labels(&["NEGATIVE", "POSITIVE"])).unwrap_err();
        assert!(error.contains("entail") && error.contains("NEGATIVE, POSITIVE"));
        let error = Scoring::of(odd, true, 3).unwrap_err();
        assert!(error.contains("contradict"), "{error}");
        assert_eq!(
            Scoring::of(odd, false, 2),
            Ok(Scoring::SingleLabel { entailment: 1 })
        );
        assert!(
            Scoring::of(odd, false, 1).is_err(),
            "one label is scored on its own"
        );
    }

    #[test]
    fn single_label_scores_sum_to_one_and_per_label_scores_stand_alone() {
        let logits = vec![
            vec![0.0, 0.0, 2.0],
            vec![1.0, 0.0, 0.0],
            vec![0.0, 5.0, 1.0],
        ];
        let single = Scoring::SingleLabel { entailment: 2 }
            .scores(&logits)
            .unwrap();
        let e = [2f32.exp(), 1.0, 1f32.exp()];
        let sum: f32 = e.iter().sum();
        for (got, want) in single.iter().zip(e.iter().map(|x| x / sum)) {
            assert!((got - want).abs() < 1e-6, "{single:?}");
        }
        let per = Scoring::PerLabel {
            entailment: 2,
            contradiction: 0,
        }
        .scores(&logits)
        .unwrap();
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        for (got, want) in per.iter().zip([sigmoid(2.0), sigmoid(-1.0), sigmoid(1.0)]) {
            assert!((got - want).abs() < 1e-6, "{per:?}");
        }
        assert!(Scoring::SingleLabel { entailment: 3 }
            .scores(&logits)
            .is_err());
    }

    #[test]
    fn ranking_is_best_first_and_ties_put_the_later_label_first() {
        let (l, s) = ranked(&labels(&["a", "b", "c", "d"]), &[0.1, 0.4, 0.1, 0.4]);
        assert_eq!(l, ["d", "b", "c", "a"]);
        assert_eq!(s, [0.4, 0.4, 0.1, 0.1]);
    }

    #[test]
    fn templates_read_like_python_format_with_one_argument() {
        let t = Template::parse("This example is {}.").unwrap();
        assert_eq!(t.fill("sports"), "This example is sports.");
        let t = Template::parse("{{literal}} {} }}").unwrap();
        assert_eq!(t.fill("x"), "{literal} x }");
        assert_eq!(Template::parse("{}").unwrap().fill("label"), "label");
        for bad in [
            "no placeholder",
            "{} and {}",
            "{0}",
            "{label}",
            "a } b {}",
            "{",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Template::parse("no placeholder")
            .unwrap_err()
            .contains("no `{}`"));
    }
}
