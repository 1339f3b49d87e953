//! prunechat: run, prune, fine-tune and measure Llama-family chat models, natively and in the
//! browser (WebAssembly).
//!
//! Layers, from the bottom: `gguf` (file format), `tokenizer` and `chat_template`, `model`,
//! `sampler` and `session` (generation), `convert`; the `wasm` facade and the CLI binary on top.

pub mod chat_template;
pub mod convert;
pub mod data;
pub mod error;
pub mod eval;
#[cfg(not(target_arch = "wasm32"))]
pub mod fsutil;
pub mod gguf;
pub mod model;
pub mod parallel;
pub mod prune;
pub mod sampler;
pub mod session;
pub mod sparse;
pub mod synthetic;
pub mod tokenizer;
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
#[cfg(target_arch = "wasm32")]
pub mod wasm_limits;
#[cfg(target_arch = "wasm32")]
pub mod wasm_prune;
#[cfg(target_arch = "wasm32")]
pub mod wasm_train;

pub use error::{Error, Result};
