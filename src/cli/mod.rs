//! Command-line parsing and dispatch. Each subcommand lives in its own file.

mod chat;
mod convert;
mod finetune;
mod info;
mod train;
mod training;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "prunechat", version, about = "Chat with, prune and measure Llama-family GGUF models")]
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
