//! `prunechat prune --structure ...`: structured pruning to a budget.

use std::time::Instant;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};

use prunechat::convert::parse_target;
use prunechat::gguf::dtype_name;
use prunechat::model::dense::DenseModel;
use prunechat::model::LayerDims;
use prunechat::prune::structured::{
    prune_structured, Progress, Ratio, Score, Structure, StructuredConfig, StructuredPruneReport,
    Target,
};
use prunechat::sparse::open_model;

use super::prune::{check_outputs, load_calibration, PruneArgs};

pub fn run(args: &PruneArgs) -> Result<()> {
    // Every argument is checked before the model is loaded, so a mistake costs no time.
    let structure = Structure::parse(
        args.structure
            .as_deref()
            .expect("run is called with --structure"),
    )?;
    if let Some(method) = &args.method {
        bail!("--method {method} prunes single weights and --structure removes whole groups; use one of them");
    }
    reject_connection_options(args)?;
    let Some(score) = args.score.as_deref() else {
        bail!("--structure needs --score: magnitude, wanda or taylor for {0}, block-influence or taylor for layers", structure.name());
    };
    let score = Score::parse(score)?;
    let ratio = Ratio::parse(&args.ratio)?;
    let target = resolve_target(args)?;
    let dtype = parse_target(&args.to)?;
    if args.n_samples == 0 {
        bail!("--n-samples must be at least 1, got 0");
    }
    if args.seq_len < 2 {
        bail!(
            "--seq-len must be at least 2 tokens for a next-token loss, got {}",
            args.seq_len
        );
    }
    let config = StructuredConfig {
        structure,
        score,
        ratio,
        target,
        greedy_steps: args.greedy_steps,
        ffn_multiple: args.ffn_multiple.unwrap_or(dtype.block_size()),
        dtype,
        batch_size: args.batch_size,
    };
    config.validate()?;
    check_outputs(args)?;

    let loaded = Instant::now();
    let gguf = open_model(&args.model)?;
    let mut model = DenseModel::from_gguf(&gguf)?;
    let (calibration, source) = load_calibration(args, &gguf, loaded)?;
    drop(gguf);

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len}, {elapsed}")
            .expect("static template"),
    );
    let unit = if score == Score::Taylor {
        "batches"
    } else {
        "layers"
    };
    let start = Instant::now();
    let clock = move || start.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "{} by {} ({} ratio) to {}",
        structure.name(),
        score.name(),
        args.ratio.to_ascii_lowercase(),
        target.describe()
    );
    let outcome = prune_structured(
        &mut model,
        &calibration,
        &config,
        Some(&clock),
        &mut |event| match event {
            Progress::Scoring { step, done, total } => {
                bar.set_message(format!("step {step}: scoring {unit}"));
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
            Progress::Step(step) => {
                let line = format!(
                "step {}: removed {} {} ({} units) in {} layers; {} parameters, {}, calibration loss {:.4}{}",
                step.step,
                step.n_groups,
                group_noun(structure),
                step.n_units,
                step.removed_per_layer.len(),
                step.params,
                super::megabytes(step.file_bytes),
                step.calibration_loss,
                step.ms_per_token.map_or(String::new(), |ms| format!(", {ms:.2} ms per token")),
            );
                // `suspend` prints even when the bar is hidden because stderr is not a terminal.
                bar.suspend(|| eprintln!("{line}"));
            }
        },
    )?;
    bar.finish_and_clear();
    print_layers(&outcome.report);

    let gguf_bytes = model.to_gguf(dtype)?.write(&args.out)?;
    println!(
        "wrote {} ({}, {})",
        args.out.display(),
        super::megabytes(gguf_bytes),
        dtype_name(dtype)
    );
    if let Some(path) = &args.report {
        let json = serde_json::json!({
            "model": args.model,
            "calibration": source,
            "report": outcome.report,
            "kept_fraction": outcome.report.kept_fraction(),
            "gguf": {"path": args.out, "bytes": gguf_bytes, "type": dtype_name(dtype)},
        });
        prunechat::fsutil::write_atomically(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}

/// Returns the one target given, or an error naming what is missing or in excess.
fn resolve_target(args: &PruneArgs) -> Result<Target> {
    let mut targets = Vec::new();
    if let Some(f) = args.target_params {
        targets.push(("--target-params", Target::Params(f)));
    }
    if let Some(b) = args.target_bytes {
        targets.push(("--target-bytes", Target::Bytes(b)));
    }
    if let Some(t) = args.target_ms_per_token {
        targets.push(("--target-ms-per-token", Target::MsPerToken(t)));
    }
    match targets.as_slice() {
        [] => bail!("--structure needs a target: --target-params F (fraction to keep), --target-bytes N or --target-ms-per-token T"),
        [(_, target)] => {
            target.validate()?;
            Ok(*target)
        }
        [(a, _), (b, _), ..] => bail!("{a} and {b} are both given; structured pruning takes one target"),
    }
}

/// Rejects the options that only connection pruning reads.
fn reject_connection_options(args: &PruneArgs) -> Result<()> {
    let connection_options = [
        ("--sparsity", args.sparsity.is_some()),
        ("--pattern", args.pattern.is_some()),
        ("--scope", args.scope.is_some()),
        ("--sparse-out", args.sparse_out.is_some()),
        ("--include-embeddings", args.include_embeddings),
        ("--layers", args.layers.is_some()),
    ];
    if let Some((name, _)) = connection_options.iter().find(|(_, set)| *set) {
        bail!("{name} applies to connection pruning (--method), not to --structure; remove {name}");
    }
    Ok(())
}

fn group_noun(structure: Structure) -> &'static str {
    match structure {
        Structure::Ffn => "FFN neurons",
        Structure::Heads => "query heads",
        Structure::KvGroups => "key/value groups",
        Structure::Layers => "layers",
    }
}

/// Prints one row per original layer: heads, key/value heads and FFN width before → after.
fn print_layers(report: &StructuredPruneReport) {
    let dims = |d: &LayerDims| format!("{:>3} {:>3} {:>6}", d.n_heads, d.n_kv_heads, d.ffn_dim);
    println!(
        "{:>5}  {:<14}    {:<14}",
        "layer", "heads kv   ffn", "heads kv   ffn"
    );
    for change in &report.layers {
        let after = change.after.as_ref().map_or("removed".to_string(), dims);
        println!("{:>5}  {}  → {}", change.layer, dims(&change.before), after);
    }
    println!(
        "{} by {}: {} of {} parameters kept ({:.2}%), {} steps, calibration loss {:.4} → {:.4}, {:.1} s",
        report.structure.name(),
        report.score.name(),
        report.params,
        report.original_params,
        report.kept_fraction() * 100.0,
        report.steps.len(),
        report.original_calibration_loss,
        report.calibration_loss,
        report.ms.unwrap_or(0.0) / 1e3
    );
}
