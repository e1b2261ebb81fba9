//! Which outputs a request asks for and with which parameters: the checks both protocol forms
//! and both kinds of request (a model's outputs, a rerank's) share.

use super::flag;
use crate::error::ApiError;
use crate::postprocess::token_classification::Strategy;
use crate::service::token_classification::Aggregation;
use serde_json::{Map, Value};

/// One output a request names: which, whether binary, and its parameters.
pub(crate) struct Named<O> {
    pub output: O,
    pub binary: bool,
    pub parameters: Option<Map<String, Value>>,
}

/// The outputs a request names, in its order, among `all` (found by `name`), each with its
/// parameters and whether it is binary (its `binary_data`, else `binary_default`); an
/// unknown name is 400 ending in `there_are` (which outputs there are), a repeated one too.
pub(crate) fn named_outputs<O: Copy + PartialEq>(
    outputs: Vec<(String, Option<Map<String, Value>>)>,
    all: &[O],
    name: impl Fn(O) -> &'static str,
    there_are: &str,
    binary_default: bool,
) -> Result<Vec<Named<O>>, ApiError> {
    let mut chosen: Vec<Named<O>> = Vec::with_capacity(outputs.len());
    for (asked, parameters) in outputs {
        let output = (all.iter().copied())
            .find(|&o| name(o) == asked)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown output `{}`; {there_are}",
                    crate::logging::bounded(&asked, crate::logging::MAX_LOGGED_TEXT)
                ))
            })?;
        if chosen.iter().any(|n| n.output == output) {
            return Err(ApiError::BadRequest(format!(
                "output `{asked}` is requested twice"
            )));
        }
        let binary = match parameters.as_ref().and_then(|p| p.get("binary_data")) {
            None => binary_default,
            Some(_) => flag(parameters.as_ref(), "binary_data")?,
        };
        chosen.push(Named {
            output,
            binary,
            parameters,
        });
    }
    Ok(chosen)
}

/// The `entities` output's parameters, those of `/token-classification` in the forms both
/// protocols carry: `aggregation_strategy` a string, `ignore_labels` one string of labels
/// separated by commas (`""` keeps every label), `stride` an integer. `None` when none is given.
pub(super) fn entity_parameters(
    parameters: Option<&Map<String, Value>>,
) -> Result<Option<Aggregation>, ApiError> {
    let get = |name| parameters.and_then(|p| p.get(name));
    let (strategy, ignore, stride) = (
        get("aggregation_strategy"),
        get("ignore_labels"),
        get("stride"),
    );
    if strategy.is_none() && ignore.is_none() && stride.is_none() {
        return Ok(None);
    }
    let strategy = strategy
        .map(|s| {
            serde_json::from_value::<Strategy>(s.clone()).map_err(|_| {
                ApiError::BadRequest(
                    "`aggregation_strategy` must be one of none, simple, first, average, max"
                        .into(),
                )
            })
        })
        .transpose()?;
    let ignore = match ignore {
        None => None,
        Some(Value::String(labels)) if labels.is_empty() => Some(Vec::new()),
        Some(Value::String(labels)) => Some(labels.split(',').map(str::to_owned).collect()),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`ignore_labels` must be a string of labels separated by commas".into(),
            ))
        }
    };
    let stride = match stride {
        None => None,
        Some(s) => Some(
            s.as_u64()
                .ok_or_else(|| ApiError::BadRequest("`stride` must be a count of tokens".into()))?,
        ),
    };
    Aggregation::new(strategy, ignore, stride)
        .map(Some)
        .map_err(ApiError::validation_as_bad_request)
}
