//! Token classification's answer, as transformers' `token-classification` pipeline makes it
//! from per-token logits: a softmax per token, the special tokens dropped, then by
//! `aggregation_strategy` either every token (`none`), or tokens merged into words (`first`,
//! `average`, `max`: a word's label from its first token, its tokens' mean scores, or its
//! most confident token) and adjacent words or tokens of one entity merged into groups (`B-X`
//! starts a group, `I-X` continues one); labels in `ignore_labels` are left out at the end.

use crate::types::TokenPiece;
use serde::{Deserialize, Serialize};

/// The pipeline's `aggregation_strategy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Every token with its own label (the pipeline's default).
    #[default]
    None,
    /// Adjacent tokens of one entity grouped.
    Simple,
    /// Words take their first token's label, then grouped.
    First,
    /// Words take the label of their tokens' mean scores, then grouped.
    Average,
    /// Words take their most confident token's label, then grouped.
    Max,
}

/// One token (strategy `none`, with `entity` and `index`) or one group of them (`entity_group`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Entity {
    /// The token's label (strategy `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// The group's label without its `B-`/`I-` prefix (other strategies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_group: Option<String>,
    /// The label's probability (a group's: the mean of its members').
    pub score: f32,
    /// The token's position in the tokenized input, special tokens counted (strategy `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The token, or the group's tokens decoded to text.
    pub word: String,
    /// Where it starts and ends in the text, in characters (Unicode code points).
    pub start: usize,
    pub end: usize,
}

/// A token or word with its label: what grouping reads.
struct Tagged {
    label: usize,
    score: f32,
    index: usize,
    word: String,
    start: usize,
    end: usize,
}

/// The pipeline's answer for one text from its tokens' `logits` (`[tokens][labels]`
/// row-major) and `pieces`; `decode` turns tokens back into text (the tokenizer's decoder).
pub fn entities(
    logits: &[f32],
    labels: &[String],
    pieces: &[TokenPiece],
    strategy: Strategy,
    ignore_labels: &[String],
    decode: impl Fn(&[&str]) -> String,
) -> Vec<Entity> {
    let n = labels.len().max(1);
    let scored: Vec<(usize, &TokenPiece, Vec<f32>)> = pieces
        .iter()
        .enumerate()
        .zip(logits.chunks_exact(n))
        .filter(|((_, piece), _)| !piece.special)
        .map(|((index, piece), row)| (index, piece, softmax(row)))
        .collect();
    let tagged: Vec<Tagged> = match strategy {
        Strategy::None | Strategy::Simple => scored
            .iter()
            .map(|(index, piece, scores)| {
                let label = argmax(scores);
                Tagged {
                    label,
                    score: scores[label],
                    index: *index,
                    word: piece.token.clone(),
                    start: piece.start,
                    end: piece.end,
                }
            })
            .collect(),
        Strategy::First | Strategy::Average | Strategy::Max => words(&scored)
            .into_iter()
            .map(|word| aggregate_word(word, strategy, &decode))
            .collect(),
    };
    let name = |label: usize| labels.get(label).cloned().unwrap_or_default();
    let out: Vec<Entity> = if strategy == Strategy::None {
        tagged
            .into_iter()
            .map(|t| Entity {
                entity: Some(name(t.label)),
                entity_group: None,
                score: t.score,
                index: Some(t.index),
                word: t.word,
                start: t.start,
                end: t.end,
            })
            .collect()
    } else {
        group(&tagged, labels, &decode)
    };
    out.into_iter()
        .filter(|e| {
            let label = e.entity.as_ref().or(e.entity_group.as_ref());
            !label.is_some_and(|l| ignore_labels.contains(l))
        })
        .collect()
}

/// One text's entities from its overlapping windows (`stride`), as the pipeline's
/// `aggregate_overlapping_entities` merges them: in order of start (stable), an entity that
/// starts inside the one kept before replaces it when longer, or as long and more confident.
pub fn merge_windows(mut found: Vec<Entity>) -> Vec<Entity> {
    found.sort_by_key(|e| e.start);
    let mut merged: Vec<Entity> = Vec::with_capacity(found.len());
    let mut found = found.into_iter();
    let Some(mut kept) = found.next() else {
        return merged;
    };
    for entity in found {
        if kept.start <= entity.start && entity.start < kept.end {
            let (length, kept_length) = (entity.end - entity.start, kept.end - kept.start);
            if length > kept_length || (length == kept_length && entity.score > kept.score) {
                kept = entity;
            }
        } else {
            merged.push(std::mem::replace(&mut kept, entity));
        }
    }
    merged.push(kept);
    merged
}

/// The tokens split into words: a word starts at every token that is not a subword.
fn words<'a, 'b>(
    scored: &'b [(usize, &'a TokenPiece, Vec<f32>)],
) -> Vec<&'b [(usize, &'a TokenPiece, Vec<f32>)]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=scored.len() {
        if i == scored.len() || !scored[i].1.subword {
            out.push(&scored[start..i]);
            start = i;
        }
    }
    out.retain(|w| !w.is_empty());
    out
}

fn aggregate_word(
    word: &[(usize, &TokenPiece, Vec<f32>)],
    strategy: Strategy,
    decode: &impl Fn(&[&str]) -> String,
) -> Tagged {
    let tokens: Vec<&str> = word.iter().map(|(_, p, _)| p.token.as_str()).collect();
    let (label, score) = match strategy {
        Strategy::Max => {
            // The first token whose best score is the highest.
            let mut best = &word[0].2;
            for (_, _, scores) in &word[1..] {
                if max(scores) > max(best) {
                    best = scores;
                }
            }
            let label = argmax(best);
            (label, best[label])
        }
        Strategy::Average => {
            let width = word[0].2.len();
            let mean: Vec<f32> = (0..width)
                .map(|j| word.iter().map(|(_, _, s)| s[j]).sum::<f32>() / word.len() as f32)
                .collect();
            let label = argmax(&mean);
            (label, mean[label])
        }
        _ => {
            let first = &word[0].2;
            let label = argmax(first);
            (label, first[label])
        }
    };
    Tagged {
        label,
        score,
        index: word[0].0,
        word: decode(&tokens),
        start: word[0].1.start,
        end: word[word.len() - 1].1.end,
    }
}

/// `B-`/`I-` and the entity type of a label; a label without a prefix continues (`I`).
fn tag(label: &str) -> (bool, &str) {
    if let Some(rest) = label.strip_prefix("B-") {
        (true, rest)
    } else if let Some(rest) = label.strip_prefix("I-") {
        (false, rest)
    } else {
        (false, label)
    }
}

/// Adjacent tokens or words of one entity merged: a group continues while the type stays the
/// same and no `B-` starts a new one.
fn group(tagged: &[Tagged], labels: &[String], decode: &impl Fn(&[&str]) -> String) -> Vec<Entity> {
    let name = |t: &Tagged| labels.get(t.label).map_or("", String::as_str);
    let mut groups: Vec<Entity> = Vec::new();
    let mut start = 0;
    for i in 1..=tagged.len() {
        let ends = i == tagged.len() || {
            let (begins, kind) = tag(name(&tagged[i]));
            let (_, last_kind) = tag(name(&tagged[i - 1]));
            begins || kind != last_kind
        };
        if !ends {
            continue;
        }
        let members = &tagged[start..i];
        start = i;
        let Some(first) = members.first() else {
            continue;
        };
        let label = name(first);
        let kind = label.split_once('-').map_or(label, |(_, rest)| rest);
        let words: Vec<&str> = members.iter().map(|t| t.word.as_str()).collect();
        let score = members.iter().map(|t| t.score).sum::<f32>() / members.len() as f32;
        groups.push(Entity {
            entity: None,
            entity_group: Some(kind.to_owned()),
            score,
            index: None,
            word: decode(&words),
            start: first.start,
            end: members[members.len() - 1].end,
        });
    }
    groups
}

fn softmax(row: &[f32]) -> Vec<f32> {
    let top = max(row);
    let exp: Vec<f32> = row.iter().map(|&x| (x - top).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

fn max(row: &[f32]) -> f32 {
    row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// The first index of the highest value, as numpy's `argmax`.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(token: &str, start: usize, end: usize, subword: bool) -> TokenPiece {
        TokenPiece {
            token: token.into(),
            start,
            end,
            subword,
            special: false,
        }
    }

    fn join(tokens: &[&str]) -> String {
        tokens.join(" ").replace(" ##", "")
    }

    #[test]
    fn words_take_their_label_by_strategy_and_groups_follow_bio() {
        let labels: Vec<String> = ["O", "B-PER", "I-PER"].map(String::from).to_vec();
        let pieces = [
            TokenPiece {
                special: true,
                ..piece("[CLS]", 0, 0, false)
            },
            piece("mer", 0, 3, false),
            piece("##kel", 3, 6, true),
            piece("spoke", 7, 12, false),
        ];
        let logits = [
            9.0, 0.0, 0.0, // [CLS]
            0.0, 3.0, 0.0, // mer: B-PER
            4.0, 0.0, 3.5, // ##kel: O
            5.0, 0.0, 0.0, // spoke: O
        ];
        let run = |s| entities(&logits, &labels, &pieces, s, &["O".to_string()], join);
        let none = run(Strategy::None);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].index, Some(1));
        let first = run(Strategy::First);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].entity_group.as_deref(), Some("PER"));
        assert_eq!(
            (first[0].word.as_str(), first[0].start, first[0].end),
            ("merkel", 0, 6)
        );
        // average: B-PER on the tokens' mean (0.46 against O's 0.33); max: "mer" is surer.
        for strategy in [Strategy::Average, Strategy::Max] {
            let found = run(strategy);
            assert_eq!(found.len(), 1, "{strategy:?}");
            assert_eq!(found[0].entity_group.as_deref(), Some("PER"));
            assert_eq!(found[0].word, "merkel");
        }
        // simple: tokens, not words: "mer" alone.
        let simple = run(Strategy::Simple);
        assert_eq!(simple.len(), 1);
        assert_eq!(simple[0].word, "mer");
    }

    #[test]
    fn windows_merge_as_the_pipeline_merges_overlapping_entities() {
        let entity = |group: &str, score: f32, start: usize, end: usize| Entity {
            entity: None,
            entity_group: Some(group.into()),
            score,
            index: None,
            word: String::new(),
            start,
            end,
        };
        let merged = merge_windows(vec![
            // The second window's copy of "Paris" is surer: it replaces the first's.
            entity("LOC", 0.9, 40, 45),
            entity("PER", 0.8, 0, 6),
            entity("LOC", 0.95, 40, 45),
            // Starts inside the entity kept and is longer: it wins.
            entity("ORG", 0.5, 60, 64),
            entity("ORG", 0.4, 62, 70),
            // Starts where the one kept ends: both stay.
            entity("MISC", 0.7, 70, 75),
        ]);
        let kept: Vec<(&str, f32, usize)> = merged
            .iter()
            .map(|e| (e.entity_group.as_deref().unwrap_or(""), e.score, e.start))
            .collect();
        assert_eq!(
            kept,
            [
                ("PER", 0.8, 0),
                ("LOC", 0.95, 40),
                ("ORG", 0.4, 62),
                ("MISC", 0.7, 70)
            ]
        );
        assert!(merge_windows(Vec::new()).is_empty());
    }
}
