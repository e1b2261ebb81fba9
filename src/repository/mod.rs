//! The model repository: which models (and versions) a server serves, where their files
//! are, and the state of each once loading starts.
//!
//! `--model-repository DIR` serves every model in `DIR` ([`discover`]); `--model-dir` is a
//! repository of one model with version 1. What is served is one immutable [`Served`] value
//! that [`crate::state::AppState`] swaps whole, so a later hot reload can build a new one
//! beside the old and swap it in without pausing requests.

mod discover;
mod name;
mod served;

pub(crate) use discover::{discover, ModelSource, VersionSource};
pub(crate) use served::{still_loading, Lookup, Served, ServedModel, ServedVersion, VersionState};
