use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use prunechat::data::{evaluation_windows, Split, DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED};
use prunechat::eval::{perplexity, sparsity};
use prunechat::model::Model;
use prunechat::sparse::open_model;

/// Window length used when `--window` is not given.
pub const DEFAULT_WINDOW: usize = 512;

#[derive(Args)]
pub struct EvalArgs {
    /// Model to evaluate: GGUF, or .psparse.
    model: PathBuf,
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
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let split = Split::parse(&args.split)?;
    if args.max_windows == Some(0) {
        anyhow::bail!("--max-windows must be at least 1, got 0");
    }
    let gguf = open_model(&args.model)?;
    let stream = super::load_tokens(&gguf, &args.data, split, args.eval_fraction, args.split_seed)?;
    let mut windows: Vec<Vec<u32>> = evaluation_windows(&stream, args.window)?.into_iter().map(|w| w.tokens).collect();
    if let Some(max) = args.max_windows {
        windows.truncate(max);
    }
    let sparsity = sparsity(&gguf)?;
    let model = dense_model(gguf)?;
    let reference = match &args.reference {
        Some(path) => Some(dense_model(open_model(path)?)?),
        None => None,
    };

    let bar = ProgressBar::new(windows.len() as u64);
    bar.set_style(ProgressStyle::with_template("evaluating [{bar:40}] {pos}/{len} windows, {elapsed}").expect("static template"));
    let started = Instant::now();
    let report = perplexity(&model, &windows, reference.as_ref(), &mut |done, _| bar.set_position(done as u64))?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    if args.json {
        let json = serde_json::json!({
            "model": args.model,
            "reference": args.reference,
            "data": stream.source,
            "n_tokens": stream.len(),
            "perplexity": report,
            "sparsity": sparsity,
            "seconds": seconds,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }

    println!("model             {} ({})", args.model.display(), super::megabytes(sparsity.file_bytes));
    println!("data              {}: {} tokens", stream.source, stream.len());
    println!(
        "windows           {} of up to {} tokens, {} tokens scored (the first token of each window is context only)",
        report.n_windows, report.window, report.n_predicted
    );
    println!("perplexity        {:.3}", report.perplexity);
    if let (Some(reference_ppl), Some(agreement)) = (report.reference_perplexity, report.top1_agreement) {
        println!("reference         {:.3} ({:.2}x of reference)", reference_ppl, report.perplexity / reference_ppl);
        println!("top-1 agreement   {:.2}%", agreement * 100.0);
    }
    println!(
        "parameters        {:.2} M, {:.2} M nonzero ({:.2}% zero)",
        sparsity.n_params as f64 / 1e6,
        sparsity.n_nonzero_params as f64 / 1e6,
        (1.0 - sparsity.n_nonzero_params as f64 / sparsity.n_params as f64) * 100.0
    );
    println!("decoder sparsity  {:.2}%", sparsity.decoder_sparsity * 100.0);
    println!("time              {seconds:.1} s");
    println!();
    println!("{:>5}  {:>9}", "layer", "sparsity");
    for entry in &sparsity.layers {
        println!("{:>5}  {:>8.2}%", entry.layer.map_or("-".into(), |l| l.to_string()), entry.sparsity * 100.0);
    }
    for entry in &sparsity.embeddings {
        println!("{:>5}  {:>8.2}%  {}", "-", entry.sparsity * 100.0, entry.name.as_deref().unwrap_or(""));
    }
    Ok(())
}

fn dense_model(gguf: prunechat::gguf::Gguf) -> Result<Model> {
    let (f32_gguf, _) = prunechat::convert::convert(gguf, candle_core::quantized::GgmlDType::F32, |_, _, _| {})?;
    Ok(Model::from_gguf(f32_gguf)?)
}
