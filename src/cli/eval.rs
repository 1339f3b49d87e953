use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use prunechat::data::{evaluation_windows, Split, DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED};
use prunechat::eval::{
    model_for_evaluation, perplexity, predict, sparsity, PerplexityReport, SparsityReport,
};
use prunechat::sparse::open_model;

/// Window length used when `--window` is not given.
pub const DEFAULT_WINDOW: usize = 512;

#[derive(Args)]
pub struct EvalArgs {
    /// Models to evaluate: GGUF, or .psparse. All share the reference and the windows, which
    /// are tokenized with the first model's tokenizer.
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// Evaluation corpus: a text, JSONL chat or chatterbot YAML file, or a directory of them.
    #[arg(long)]
    data: PathBuf,
    /// Reference model (usually the dense one) for top-1 agreement and its own perplexity.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Tokens per evaluation window; windows do not overlap.
    #[arg(long, default_value_t = DEFAULT_WINDOW)]
    window: usize,
    /// Part of the corpus to evaluate: held-out, calibration or all.
    #[arg(long, default_value = "held-out")]
    split: String,
    /// Fraction of the corpus's documents in the held-out split.
    #[arg(long, default_value_t = DEFAULT_EVAL_FRACTION)]
    eval_fraction: f64,
    /// Seed of the calibration / held-out split.
    #[arg(long, default_value_t = DEFAULT_SPLIT_SEED)]
    split_seed: u64,
    /// Evaluate only the first N windows.
    #[arg(long)]
    max_windows: Option<usize>,
    /// Write the evaluated windows' token ids to this file as a JSON array of arrays.
    #[arg(long)]
    save_windows: Option<PathBuf>,
    /// Print one JSON object per model (JSON Lines) instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let split = Split::parse(&args.split)?;
    if args.max_windows == Some(0) {
        bail!("--max-windows must be at least 1, got 0");
    }
    for path in args.models.iter().chain(&args.reference) {
        if !path.exists() {
            bail!("{}: model file not found", path.display());
        }
    }

    let first = open_model(&args.models[0])?;
    let vocab_size = prunechat::model::Config::from_gguf(&first)?.vocab_size;
    let stream = super::load_tokens(
        &first,
        &args.data,
        split,
        args.eval_fraction,
        args.split_seed,
    )?;
    drop(first);
    let mut windows: Vec<Vec<u32>> = evaluation_windows(&stream, args.window)?
        .into_iter()
        .map(|w| w.tokens)
        .collect();
    if let Some(max) = args.max_windows {
        windows.truncate(max);
    }
    if let Some(path) = &args.save_windows {
        prunechat::fsutil::write_atomically(path, serde_json::to_string(&windows)?.as_bytes())?;
    }
    let n_tokens: usize = windows.iter().map(Vec::len).sum();

    let reference = match &args.reference {
        Some(path) => {
            let gguf = open_model(path)?;
            check_vocabulary(&gguf, vocab_size, path)?;
            let model = model_for_evaluation(gguf)?;
            let bar = progress_bar(windows.len(), "reference");
            let predictions = predict(&model, &windows, &mut |done, _| {
                bar.set_position(done as u64)
            })?;
            bar.finish_and_clear();
            Some(predictions)
        }
        None => None,
    };

    for path in &args.models {
        let gguf = open_model(path)?;
        check_vocabulary(&gguf, vocab_size, path)?;
        let sparsity = sparsity(&gguf)?;
        let model = model_for_evaluation(gguf)?;
        let bar = progress_bar(windows.len(), "evaluating");
        let started = Instant::now();
        let report = perplexity(&model, &windows, reference.as_ref(), &mut |done, _| {
            bar.set_position(done as u64)
        })?;
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();

        if args.json {
            let json = serde_json::json!({
                "model": path,
                "reference": args.reference,
                "data": stream.source,
                "n_tokens": n_tokens,
                "perplexity": report,
                "sparsity": sparsity,
                "seconds": seconds,
            });
            println!("{}", serde_json::to_string(&json)?);
        } else {
            print_tables(path, &stream.source, n_tokens, &report, &sparsity, seconds);
        }
    }
    Ok(())
}

fn check_vocabulary(
    gguf: &prunechat::gguf::Gguf,
    vocab_size: usize,
    path: &std::path::Path,
) -> Result<()> {
    let size = prunechat::model::Config::from_gguf(gguf)?.vocab_size;
    if size != vocab_size {
        bail!("{}: vocabulary of {size} tokens differs from the first model's {vocab_size}; all models need the same tokenizer", path.display());
    }
    Ok(())
}

fn progress_bar(len: usize, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    let template = format!("{label:>10} [{{bar:40}}] {{pos}}/{{len}} windows, {{elapsed}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    bar
}

fn print_tables(
    path: &std::path::Path,
    source: &str,
    n_tokens: usize,
    report: &PerplexityReport,
    sparsity: &SparsityReport,
    seconds: f64,
) {
    println!(
        "model             {} ({})",
        path.display(),
        super::megabytes(sparsity.file_bytes)
    );
    println!("data              {source}: {n_tokens} tokens");
    println!(
        "windows           {} of up to {} tokens, {} tokens scored (the first token of each window is context only)",
        report.n_windows, report.window, report.n_predicted
    );
    println!("perplexity        {:.3}", report.perplexity);
    if let (Some(reference_ppl), Some(agreement)) =
        (report.reference_perplexity, report.top1_agreement)
    {
        println!(
            "reference         {:.3} ({:.2}x of reference)",
            reference_ppl,
            report.perplexity / reference_ppl
        );
        println!("top-1 agreement   {:.2}%", agreement * 100.0);
    }
    println!(
        "parameters        {:.2} M, {:.2} M nonzero ({:.2}% zero)",
        sparsity.n_params as f64 / 1e6,
        sparsity.n_nonzero_params as f64 / 1e6,
        (1.0 - sparsity.n_nonzero_params as f64 / sparsity.n_params as f64) * 100.0
    );
    println!(
        "decoder sparsity  {:.2}%",
        sparsity.decoder_sparsity * 100.0
    );
    println!("time              {seconds:.1} s");
    println!();
    println!("{:>5}  {:>9}", "layer", "sparsity");
    for entry in &sparsity.layers {
        println!(
            "{:>5}  {:>8.2}%",
            entry.layer.map_or("-".into(), |l| l.to_string()),
            entry.sparsity * 100.0
        );
    }
    for entry in &sparsity.embeddings {
        println!(
            "{:>5}  {:>8.2}%  {}",
            "-",
            entry.sparsity * 100.0,
            entry.name.as_deref().unwrap_or("")
        );
    }
    println!();
}
