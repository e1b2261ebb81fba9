//! The shapes a request's inputs take: texts, text pairs (`{"text", "text_pair"}`), lists of
//! them, zero-shot's texts and candidate labels. Each is deserialized by hand where `untagged`
//! would say only "did not match any variant".

use crate::types::TextInput;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One input, or a list of them (each classified on its own).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum Inputs {
    One(Input),
    Batch(Vec<Input>),
}

/// A text, or a text pair (transformers' `{"text", "text_pair"}`), which the model reads as
/// one sequence: `[CLS] text [SEP] text_pair [SEP]`, the pair's tokens of token type 1.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Pair(TextPair),
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextPair {
    pub text: String,
    /// The second text; without it the object is a single text.
    pub text_pair: Option<String>,
}

impl From<Input> for TextInput {
    fn from(input: Input) -> Self {
        match input {
            Input::Text(text) => text.into(),
            Input::Pair(TextPair { text, text_pair }) => TextInput { text, text_pair },
        }
    }
}

impl Inputs {
    /// The inputs, and whether the request held a single one (not a list).
    pub(crate) fn into_list(self) -> (Vec<Input>, bool) {
        match self {
            Inputs::One(input) => (vec![input], true),
            Inputs::Batch(inputs) => (inputs, false),
        }
    }
}

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InputsVisitor;
        impl<'de> Visitor<'de> for InputsVisitor {
            type Value = Inputs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a {\"text\", \"text_pair\"} object, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Inputs, E> {
                InputVisitor.visit_str(v).map(Inputs::One)
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Inputs, E> {
                InputVisitor.visit_string(v).map(Inputs::One)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Inputs, A::Error> {
                InputVisitor.visit_map(map).map(Inputs::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inputs, A::Error> {
                let mut inputs = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(input) = seq.next_element::<Input>()? {
                    inputs.push(input);
                }
                Ok(Inputs::Batch(inputs))
            }
        }
        deserializer.deserialize_any(InputsVisitor)
    }
}

struct InputVisitor;

impl<'de> Visitor<'de> for InputVisitor {
    type Value = Input;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a {\"text\", \"text_pair\"} object")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Input, E> {
        Ok(Input::Text(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Input, E> {
        Ok(Input::Text(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Input, A::Error> {
        TextPair::deserialize(de::value::MapAccessDeserializer::new(map)).map(Input::Pair)
    }
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InputVisitor)
    }
}

/// One text, or a list of texts; each is classified against every candidate label.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged, try_from = "Inputs")]
pub(crate) enum Sequences {
    One(String),
    Batch(Vec<String>),
}

impl TryFrom<Inputs> for Sequences {
    type Error = String;

    /// The texts of `/predict`'s inputs; a text pair has no place here (the hypotheses are
    /// the second texts).
    fn try_from(inputs: Inputs) -> Result<Self, String> {
        let text = |input: Input| match input {
            Input::Text(text) => Ok(text),
            Input::Pair(pair) if pair.text_pair.is_none() => Ok(pair.text),
            Input::Pair(_) => Err("zero-shot inputs are texts, not text pairs: each text is \
                                   paired with one hypothesis per candidate label"
                .to_string()),
        };
        match inputs {
            Inputs::One(input) => text(input).map(Sequences::One),
            Inputs::Batch(inputs) => inputs
                .into_iter()
                .map(text)
                .collect::<Result<_, _>>()
                .map(Sequences::Batch),
        }
    }
}

/// The labels to choose from: a list, or one string of comma-separated labels (as transformers
/// takes them; blanks around each are dropped). At most `--max-candidate-labels`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum CandidateLabels {
    List(Vec<String>),
    Joined(String),
}

impl CandidateLabels {
    pub(crate) fn into_list(self) -> Vec<String> {
        match self {
            Self::List(labels) => labels,
            Self::Joined(labels) => labels
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

impl<'de> Deserialize<'de> for CandidateLabels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = CandidateLabels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of labels or a string of comma-separated labels")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CandidateLabels, E> {
                Ok(CandidateLabels::Joined(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CandidateLabels, A::Error> {
                let mut labels = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(label) = seq.next_element::<String>()? {
                    labels.push(label);
                }
                Ok(CandidateLabels::List(labels))
            }
        }
        deserializer.deserialize_any(LabelsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn texts_and_pairs_mix_in_one_list() {
        let (inputs, single) =
            parse::<Inputs>(r#"["a", {"text": "b", "text_pair": "c"}, {"text": "d"}]"#)
                .unwrap()
                .into_list();
        assert!(!single);
        let inputs: Vec<TextInput> = inputs.into_iter().map(TextInput::from).collect();
        assert_eq!(
            inputs,
            [
                TextInput::from("a"),
                TextInput::pair("b", "c"),
                TextInput::from("d")
            ]
        );
        let (one, single) = parse::<Inputs>(r#"{"text": "b", "text_pair": "c"}"#)
            .unwrap()
            .into_list();
        assert!(single && one.len() == 1);
        for (bad, needle) in [
            (r#"{"text": "a", "extra": 1}"#, "unknown field"),
            (r#"[["a", "b"]]"#, "text_pair"),
            ("5", "a string, a {\"text\""),
        ] {
            let error = parse::<Inputs>(bad).unwrap_err();
            assert!(error.contains(needle), "{bad}: {error}");
        }
    }

    #[test]
    fn zero_shot_takes_texts_and_labels_as_a_list_or_a_comma_separated_string() {
        assert!(
            matches!(parse::<Sequences>(r#"["a", {"text": "b"}]"#), Ok(Sequences::Batch(t)) if t == ["a", "b"])
        );
        let error = parse::<Sequences>(r#"{"text": "a", "text_pair": "b"}"#).unwrap_err();
        assert!(error.contains("not text pairs"), "{error}");
        let labels = parse::<CandidateLabels>(r#"" sports,politics , ,cooking ""#).unwrap();
        assert_eq!(labels.into_list(), ["sports", "politics", "cooking"]);
        let labels = parse::<CandidateLabels>(r#"[" a ", ""]"#).unwrap();
        assert_eq!(labels.into_list(), [" a ", ""], "a list is taken as given");
    }
}
