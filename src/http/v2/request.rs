//! The `/infer` request body (KServe's inference request, JSON part), read by the JSON and
//! the binary-extension extractors alike.

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InferRequest {
    /// Echoed in the response.
    pub id: Option<String>,
    /// Accepted and ignored.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// `text` (BYTES, one text per element) and optionally `text_pair` (BYTES, the second
    /// text of each text, same shape): pairs are read as one sequence, as transformers'
    /// `text`/`text_pair`.
    pub inputs: Vec<RequestInput>,
    /// The outputs to return, in this order; all of them when absent or empty.
    pub outputs: Option<Vec<RequestOutput>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RequestInput {
    pub name: String,
    /// Its element count must equal the number of texts.
    pub shape: Vec<u64>,
    pub datatype: String,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// Strings in row-major order, flat or nested as `shape`; absent for binary data.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RequestOutput {
    /// `label`, `score` or `scores`.
    pub name: String,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
}
