//! The crate's error type. Every variant names the value that was wrong and, where there is
//! one, what to do instead. The wasm facade turns it into a JavaScript `Error` once.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
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

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
