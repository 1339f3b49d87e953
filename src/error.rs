//! The crate's error type. Every variant names the value that was wrong and, where there is
//! one, what to do instead. The wasm facade turns it into a JavaScript `Error` once.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The I/O error is part of the message and not a `source`, so that error chains (`{:#}`)
    /// print it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// The bytes are not a readable GGUF file (bad magic, truncated, inconsistent header).
    #[error("invalid GGUF file: {0}")]
    InvalidGguf(String),

    /// The bytes are not a readable `.psparse` file.
    #[error("invalid .psparse file: {0}")]
    InvalidSparse(String),

    #[error("missing GGUF metadata key `{key}`: {hint}")]
    MissingKey { key: String, hint: String },

    #[error("GGUF metadata key `{key}` is invalid: {message}")]
    InvalidKey { key: String, message: String },

    #[error("unsupported architecture `{0}`: prunechat runs Llama-family models (general.architecture = \"llama\", or \"deci\" for per-layer sizes)")]
    UnsupportedArchitecture(String),

    #[error("tensor `{name}`: {message}")]
    Tensor { name: String, message: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    Template(String),

    /// A caller-supplied value broke a rule; `name` is the option or argument.
    #[error("invalid {name}: {message}")]
    InvalidArgument { name: String, message: String },

    /// Training data that cannot be used: empty, malformed, or without any token to learn.
    #[error("training data: {0}")]
    Data(String),

    /// A training checkpoint that cannot be read or does not belong to this run.
    #[error("checkpoint: {0}")]
    Checkpoint(String),

    /// The loss or gradient norm of an optimizer step was NaN or infinite. The step's update
    /// was not applied.
    #[error(
        "the training {quantity} is {value} at step {step}; training stopped before applying that step's update. \
         Resume from the last checkpoint, for example with a lower learning rate"
    )]
    NonFinite {
        step: usize,
        quantity: &'static str,
        value: f32,
    },

    #[error("{}", candle_message(.0))]
    Candle(#[from] candle_core::Error),
}

/// Returns a candle error's message without the backtrace that candle attaches when
/// `RUST_BACKTRACE` is set, so that messages for users stay short.
pub fn candle_message(error: &candle_core::Error) -> String {
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        other => other.to_string(),
    }
}

/// True when a candle error comes from reading past the end of its input.
pub fn is_unexpected_eof(error: &candle_core::Error) -> bool {
    match error {
        candle_core::Error::WithBacktrace { inner, .. }
        | candle_core::Error::Context { inner, .. }
        | candle_core::Error::WithPath { inner, .. } => is_unexpected_eof(inner),
        candle_core::Error::Io(io) => io.kind() == std::io::ErrorKind::UnexpectedEof,
        _ => false,
    }
}

impl Error {
    pub fn invalid_argument(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name: name.into(),
            message: message.into(),
        }
    }

    pub fn tensor(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Tensor {
            name: name.into(),
            message: message.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}
