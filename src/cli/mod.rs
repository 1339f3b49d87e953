//! Command-line parsing and dispatch. Each subcommand lives in its own file.

mod chat;
mod convert;
mod eval;
mod finetune;
mod info;
mod prune;
mod prune_structured;
mod train;
mod training;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "prunechat",
    version,
    about = "Chat with, prune and measure Llama-family GGUF models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Chat with a model: interactive, or one reply with --prompt.
    Chat(chat::ChatArgs),
    /// Print a model file's architecture, per-layer sizes, tensor types, parameters and size.
    Info(info::InfoArgs),
    /// Convert a model's weights to another GGML type, e.g. Q4_1 to Q8_0.
    Convert(convert::ConvertArgs),
    /// Prune weights (magnitude, Wanda, SparseGPT) or whole neurons, heads and layers
    /// (--structure) and write the pruned model.
    Prune(prune::PruneArgs),
    /// Measure perplexity, agreement with a reference model, sparsity and size.
    Eval(eval::EvalArgs),
    /// Fine-tune a model (all weights or LoRA adapters), optionally with sparsity penalties or
    /// gradual magnitude pruning, and export it as GGUF.
    Finetune(Box<finetune::FinetuneArgs>),
    /// Train a small Llama-style chat model from scratch, tokenizer included.
    Train(train::TrainArgs),
}

/// Runs the command line and returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Chat(args) => chat::run(args),
        Command::Info(args) => info::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Prune(args) => prune::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Finetune(args) => finetune::run(*args),
        Command::Train(args) => train::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Formats a byte count as MB with one decimal (1 MB = 10^6 bytes).
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The bundled English dialogue corpus, relative to the repository root.
pub const DEFAULT_CORPUS: &str = "data/chatterbot-corpus/english";

/// Finds the bundled dialogue corpus: under the current directory if it is there, else under
/// the repository this binary was built from. Returns the relative path when neither has it,
/// so the caller's error names the path the user should create.
pub fn default_corpus() -> std::path::PathBuf {
    let relative = std::path::Path::new(DEFAULT_CORPUS);
    if relative.exists() {
        return relative.to_path_buf();
    }
    let in_repository = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CORPUS);
    if in_repository.exists() {
        return in_repository;
    }
    relative.to_path_buf()
}

/// Loads a corpus, keeps one split, and tokenizes it with the model's tokenizer and chat
/// template.
pub fn load_tokens(
    gguf: &prunechat::gguf::Gguf,
    path: &std::path::Path,
    split: prunechat::data::Split,
    eval_fraction: f64,
    split_seed: u64,
) -> anyhow::Result<prunechat::data::TokenStream> {
    use prunechat::chat_template::ChatTemplate;
    use prunechat::tokenizer::Tokenizer;

    let tokenizer = Tokenizer::from_gguf(gguf)?;
    let template = ChatTemplate::from_gguf(gguf, &tokenizer)?;
    let corpus = prunechat::data::load_corpus(path)?;
    let corpus = prunechat::data::select_split(corpus, split, eval_fraction, split_seed)?;
    Ok(prunechat::data::tokenize_corpus(
        &corpus, &tokenizer, &template,
    )?)
}
