//! The anneal grammar as a pest parser. This crate knows nothing of later stages: it turns
//! source text into pest pairs (with byte spans) and nothing else; `anneal-compiler` builds
//! the syntax tree from them.

use pest_derive::Parser;

/// The pest parser generated from `grammar/anneal.pest`.
#[derive(Parser)]
#[grammar = "../anneal.pest"]
pub struct AnnealParser;
