use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use prunechat::convert::parse_target;
use prunechat::data::{calibration_windows, DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED};
use prunechat::eval::keeps_zeros_exact;
use prunechat::fsutil::check_output_path;
use prunechat::gguf::dtype_name;
use prunechat::model::dense::{DenseModel, LinearKind};
use prunechat::prune::{
    prune_model, Method, Pattern, PruneConfig, PruneReport, Scope, DEFAULT_BATCH_SIZE,
};
use prunechat::sparse::{self, open_model, ValueType};

/// Calibration data used when `--calib` is not given, relative to the working directory.

#[derive(Args)]
pub struct PruneArgs {
    /// Model to prune: GGUF, or .psparse.
    pub(super) model: PathBuf,
    /// Connection pruning method: magnitude, wanda or sparsegpt. Not combinable with
    /// --structure.
    #[arg(long)]
    pub(super) method: Option<String>,
    /// Structured pruning: remove whole groups instead of single weights. ffn (FFN neurons),
    /// heads (query heads, the same number from every key/value group), kv-groups (key/value
    /// heads with their query heads) or layers (decoder layers). Needs --score and one target.
    #[arg(long)]
    pub(super) structure: Option<String>,
    /// Importance score for --structure: magnitude, wanda, taylor (ffn, heads, kv-groups), or
    /// block-influence, taylor (layers).
    #[arg(long)]
    pub(super) score: Option<String>,
    /// Structured target: fraction of all parameters to keep, in (0, 1), embeddings included.
    #[arg(long)]
    pub(super) target_params: Option<f64>,
    /// Structured target: maximum size of the output GGUF in bytes, at the --to type.
    #[arg(long)]
    pub(super) target_bytes: Option<u64>,
    /// Structured target: maximum decode time per token in milliseconds, measured here on the
    /// quantized model (median of 16 tokens; noisy on a busy machine).
    #[arg(long)]
    pub(super) target_ms_per_token: Option<f64>,
    /// Structured: steps in which the target is reached, re-scoring after each. Layers are
    /// removed one per step regardless.
    #[arg(long, default_value_t = prunechat::prune::structured::DEFAULT_GREEDY_STEPS)]
    pub(super) greedy_steps: usize,
    /// Structured: global (groups of all layers compete, see docs/pruning.md) or uniform (the
    /// same fraction from every layer).
    #[arg(long, default_value = "global")]
    pub(super) ratio: String,
    /// Structured: keep FFN widths at multiples of this. Default: the block size of --to (32
    /// for q8_0), so ffn_down stays in that type; 1 allows any width.
    #[arg(long)]
    pub(super) ffn_multiple: Option<usize>,
    /// Fraction of each pruned matrix's weights to set to zero, in [0, 1). Optional with
    /// --pattern N:M, whose sparsity is 1 - N/M.
    #[arg(long)]
    pub(super) sparsity: Option<f64>,
    /// Sparsity pattern: unstructured, or N:M (N kept of every M consecutive inputs, e.g. 2:4).
    #[arg(long)]
    pub(super) pattern: Option<String>,
    /// Group whose weights compete, for unstructured magnitude and Wanda: row, matrix or global
    /// (magnitude only). Default: matrix for magnitude, row for Wanda.
    #[arg(long)]
    pub(super) scope: Option<String>,
    /// Calibration corpus: a text, JSONL chat or chatterbot YAML file, or a directory of them.
    /// Its calibration split is used (see --eval-fraction). Default:
    /// data/chatterbot-corpus/english, under the current directory or the repository.
    #[arg(long)]
    pub(super) calib: Option<PathBuf>,
    /// Number of calibration samples.
    #[arg(long, default_value_t = 32)]
    pub(super) n_samples: usize,
    /// Tokens per calibration sample.
    #[arg(long, default_value_t = 256)]
    pub(super) seq_len: usize,
    /// Seed for drawing the calibration samples.
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Fraction of the corpus's documents held out for evaluation and kept out of calibration.
    #[arg(long, default_value_t = DEFAULT_EVAL_FRACTION)]
    pub(super) eval_fraction: f64,
    /// Seed of the calibration / held-out split.
    #[arg(long, default_value_t = DEFAULT_SPLIT_SEED)]
    pub(super) split_seed: u64,
    /// Also prune the output head and the token embedding.
    #[arg(long)]
    pub(super) include_embeddings: bool,
    /// SparseGPT damping λ: λ times the mean diagonal of H is added to H's diagonal.
    #[arg(long, default_value_t = prunechat::prune::sparsegpt::DEFAULT_DAMPING)]
    pub(super) damping: f64,
    /// SparseGPT block width in columns.
    #[arg(long, default_value_t = prunechat::prune::sparsegpt::DEFAULT_BLOCK_SIZE)]
    pub(super) block_size: usize,
    /// Decoder layers to prune, as START..END (END excluded); default: all.
    #[arg(long)]
    pub(super) layers: Option<String>,
    /// Calibration samples per forward pass.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub(super) batch_size: usize,
    /// Output GGUF file.
    #[arg(long)]
    pub(super) out: PathBuf,
    /// Also write the compact sparse file (bitmasks plus packed values) here.
    #[arg(long)]
    pub(super) sparse_out: Option<PathBuf>,
    /// Value type of the sparse file: f16 or f32.
    #[arg(long, default_value = "f16")]
    pub(super) sparse_values: String,
    /// Weight type of the output GGUF: q8_0, f16, f32, q4_0, ... (see `prunechat convert`).
    #[arg(long, default_value = "q8_0")]
    pub(super) to: String,
    /// Write the full report as JSON to this file.
    #[arg(long)]
    pub(super) report: Option<PathBuf>,
    /// Allow an output path to be the input file.
    #[arg(long)]
    pub(super) force: bool,
}

pub fn run(args: PruneArgs) -> Result<()> {
    if args.structure.is_some() {
        return super::prune_structured::run(&args);
    }
    // Every argument is checked before the model is loaded, so a mistake costs no time.
    let method_name = args.method.as_deref().context(
        "--method or --structure is required (for example --method wanda --sparsity 0.5)",
    )?;
    let method = Method::parse(method_name)?;
    reject_structured_options(&args)?;
    let pattern = resolve_pattern(
        args.pattern.as_deref().unwrap_or("unstructured"),
        args.sparsity,
    )?;
    let scope = args.scope.as_deref().map(Scope::parse).transpose()?;
    let target = parse_target(&args.to)?;
    let value_type = ValueType::parse(&args.sparse_values)?;
    let layers = args.layers.as_deref().map(parse_layers).transpose()?;
    let config = PruneConfig {
        method,
        pattern,
        scope,
        include_embeddings: args.include_embeddings,
        damping: args.damping,
        block_size: args.block_size,
        layers,
        batch_size: args.batch_size,
    };
    config.validate()?;
    check_outputs(&args)?;
    if !keeps_zeros_exact(target) {
        eprintln!(
            "warning: {} does not keep zeros exact, so the written file's sparsity will be lower",
            dtype_name(target)
        );
    }

    let loaded = Instant::now();
    let gguf = open_model(&args.model)?;
    let mut model = DenseModel::from_gguf(&gguf)?;
    let (calibration, source) = load_calibration(&args, &gguf, loaded)?;

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} layers, {elapsed}")
            .expect("static template"),
    );
    bar.set_message(format!("{} {}", method.name(), pattern.describe()));
    let start = Instant::now();
    let clock = move || start.elapsed().as_secs_f64() * 1e3;
    let outcome = prune_model(
        &mut model,
        &calibration,
        &config,
        Some(&clock),
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    print_table(&outcome.report);

    let gguf_bytes = model.to_gguf(target)?.write(&args.out)?;
    println!(
        "wrote {} ({}, {})",
        args.out.display(),
        super::megabytes(gguf_bytes),
        dtype_name(target)
    );
    let mut sparse_bytes = None;
    if let Some(path) = &args.sparse_out {
        let bytes = sparse::write(path, &model, &outcome.masks, value_type)?;
        sparse_bytes = Some(bytes);
        println!(
            "wrote {} ({}, sparse {:?} values)",
            path.display(),
            super::megabytes(bytes),
            value_type
        );
    }
    if let Some(path) = &args.report {
        let json = serde_json::json!({
            "model": args.model,
            "calibration": source,
            "report": outcome.report,
            "sparsity": outcome.report.sparsity(),
            "gguf": {"path": args.out, "bytes": gguf_bytes, "type": dtype_name(target)},
            "sparse": args.sparse_out.as_ref().map(|p| serde_json::json!({"path": p, "bytes": sparse_bytes, "values": value_type})),
        });
        prunechat::fsutil::write_atomically(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}

/// Loads the calibration split of --calib (or the default corpus) and cuts the windows.
/// Returns them and the corpus description.
pub(super) fn load_calibration(
    args: &PruneArgs,
    gguf: &prunechat::gguf::Gguf,
    loaded: Instant,
) -> Result<(Vec<Vec<u32>>, String)> {
    let calibration_path = args.calib.clone().unwrap_or_else(super::default_corpus);
    if args.calib.is_none() && !calibration_path.exists() {
        bail!(
            "the default calibration data {} is missing (looked in the current directory and in {}); \
             pass --calib FILE or run scripts/fetch-model.sh",
            super::DEFAULT_CORPUS,
            env!("CARGO_MANIFEST_DIR")
        );
    }
    let stream = super::load_tokens(
        gguf,
        &calibration_path,
        prunechat::data::Split::Calibration,
        args.eval_fraction,
        args.split_seed,
    )?;
    let windows = calibration_windows(&stream, args.n_samples, args.seq_len, args.seed)?;
    let calibration: Vec<Vec<u32>> = windows.into_iter().map(|w| w.tokens).collect();
    eprintln!(
        "loaded {} and {} calibration tokens ({} samples × {}) from {} in {:.1} s",
        args.model.display(),
        stream.len(),
        args.n_samples,
        args.seq_len,
        stream.source,
        loaded.elapsed().as_secs_f64()
    );
    Ok((calibration, stream.source.clone()))
}

/// Rejects the options that only structured pruning reads.
fn reject_structured_options(args: &PruneArgs) -> Result<()> {
    let structured_options = [
        ("--score", args.score.is_some()),
        ("--target-params", args.target_params.is_some()),
        ("--target-bytes", args.target_bytes.is_some()),
        ("--target-ms-per-token", args.target_ms_per_token.is_some()),
        ("--ffn-multiple", args.ffn_multiple.is_some()),
    ];
    if let Some((name, _)) = structured_options.iter().find(|(_, set)| *set) {
        bail!("{name} applies to structured pruning; add --structure (ffn, heads, kv-groups or layers) or remove {name}");
    }
    Ok(())
}

/// Combines --pattern and --sparsity, rejecting a sparsity that contradicts an N:M pattern.
fn resolve_pattern(pattern: &str, sparsity: Option<f64>) -> Result<Pattern> {
    let parsed = Pattern::parse(pattern, sparsity.unwrap_or(f64::NAN))?;
    match (parsed, sparsity) {
        (Pattern::Unstructured { .. }, None) => {
            bail!("--sparsity is required for unstructured pruning (for example --sparsity 0.5)")
        }
        (Pattern::NOfM { n, m }, Some(s)) if n < m && (s - parsed.sparsity()).abs() > 1e-9 => {
            bail!(
            "--sparsity {s} contradicts --pattern {n}:{m}, which sets sparsity {}; omit --sparsity",
            parsed.sparsity()
        )
        }
        _ => Ok(parsed),
    }
}

/// Parses `START..END`.
fn parse_layers(text: &str) -> Result<std::ops::Range<usize>> {
    let (start, end) = text
        .split_once("..")
        .with_context(|| format!("--layers {text:?} is not START..END, e.g. 0..4"))?;
    let start: usize = start
        .trim()
        .parse()
        .with_context(|| format!("--layers {text:?}: invalid start"))?;
    let end: usize = end
        .trim()
        .parse()
        .with_context(|| format!("--layers {text:?}: invalid end"))?;
    Ok(start..end)
}

/// Rejects output paths that would overwrite the input or each other, or whose directory
/// does not exist, before any work is done.
pub(super) fn check_outputs(args: &PruneArgs) -> Result<()> {
    if !args.model.exists() {
        bail!("{}: model file not found", args.model.display());
    }
    let mut outputs: Vec<&Path> = vec![&args.out];
    outputs.extend(args.sparse_out.as_deref());
    outputs.extend(args.report.as_deref());
    for (i, path) in outputs.iter().enumerate() {
        check_output_path(&args.model, path, args.force)?;
        if outputs[..i].contains(path) {
            bail!(
                "{} is given for two outputs; choose different paths",
                path.display()
            );
        }
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!(
                "{}: directory {} does not exist",
                path.display(),
                parent.display()
            );
        }
    }
    Ok(())
}

/// Prints one row per layer: sparsity, each matrix's reconstruction error and the time.
fn print_table(report: &PruneReport) {
    let kinds: Vec<&str> = LinearKind::ALL.iter().map(|k| k.gguf_name()).collect();
    print!("{:>5} {:>9}", "layer", "sparsity");
    for kind in &kinds {
        print!(" {kind:>11}");
    }
    println!(" {:>8}", "ms");
    for layer in &report.layers {
        print!("{:>5} {:>8.2}%", layer.label(), layer.sparsity() * 100.0);
        if layer.layer.is_some() {
            for m in &layer.matrices {
                match m.reconstruction_error {
                    Some(e) => print!(" {e:>11.4}"),
                    None => print!(" {:>11}", "-"),
                }
            }
        } else {
            let parts: Vec<String> = layer
                .matrices
                .iter()
                .map(|m| {
                    format!(
                        "{} {}",
                        m.name,
                        m.reconstruction_error
                            .map_or("-".into(), |e| format!("{e:.4}"))
                    )
                })
                .collect();
            print!(" {:<83}", parts.join(", "));
        }
        println!(" {:>8.0}", layer.ms.unwrap_or(0.0));
    }
    println!(
        "{} {}: {:.2}% of {} weights in the pruned matrices are zero (target {:.2}%), {:.1} s; \
         error = ‖WX − ŴX‖_F / ‖WX‖_F on the calibration inputs",
        report.method.name(),
        report.pattern.describe(),
        report.sparsity() * 100.0,
        report.n_weights(),
        report.target_sparsity * 100.0,
        report.ms.unwrap_or(0.0) / 1e3
    );
}
