use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;

use prunechat::chat_template::ChatTemplate;
use prunechat::convert::parse_target;
use prunechat::data::load_corpus;
use prunechat::fsutil::check_output_path;
use prunechat::model::dense::DenseModel;
use prunechat::model::lora::LoraConfig;
use prunechat::sparse::open_model;
use prunechat::tokenizer::Tokenizer;
use prunechat::train::masks::MaskSet;
use prunechat::train::schedule::{GmpSchedule, PenaltyRamp};
use prunechat::train::sparse::{SparsePenalty, SparsityReport};
use prunechat::train::{corpus, Trainer};

use super::training::{self, TrainOpts};

#[derive(Args)]
pub struct FinetuneArgs {
    /// Model to fine-tune: GGUF, or .psparse as written by `prunechat prune --sparse-out`.
    model: PathBuf,
    /// Training data: a text file, a JSONL chat file (one {"messages": [...]} per line), a
    /// chatterbot-corpus YAML file, or a directory of them. Chat data trains on assistant replies only.
    #[arg(long)]
    data: PathBuf,
    /// Output GGUF file.
    #[arg(long)]
    out: PathBuf,
    /// Type of the output's matrices: f32, f16, q8_0, q4_0, ... (as in `convert`).
    #[arg(long, default_value = "q8_0")]
    to: String,
    /// Train LoRA adapters of this rank on the seven projections instead of all weights;
    /// they are merged into the weights on export.
    #[arg(long)]
    lora_rank: Option<usize>,
    /// LoRA scale numerator: the update is scaled by alpha / rank (default: 2 x rank).
    #[arg(long)]
    lora_alpha: Option<f64>,
    /// Read weight masks (1 = kept) from this safetensors file instead of from the zeros of
    /// the model's projection matrices.
    #[arg(long, conflicts_with = "no_masks")]
    masks: Option<PathBuf>,
    /// Train every weight, including those that are zero in the file.
    #[arg(long)]
    no_masks: bool,
    /// L1 penalty strength on the projection weights (proximal step; produces exact zeros).
    #[arg(long, default_value_t = 0.0)]
    l1: f64,
    /// Group-lasso strength on FFN neurons.
    #[arg(long, default_value_t = 0.0)]
    group_ffn: f64,
    /// Group-lasso strength on key/value head groups.
    #[arg(long, default_value_t = 0.0)]
    group_kv: f64,
    /// Ramp the penalties linearly from 0 at step START to full at step END, written START:END
    /// (default: full strength from the first step).
    #[arg(long)]
    penalty_ramp: Option<String>,
    /// Gradual magnitude pruning: final sparsity of every projection matrix.
    #[arg(long)]
    gmp_final: Option<f64>,
    /// Gradual magnitude pruning: sparsity at the first pruning step.
    #[arg(long, default_value_t = 0.0)]
    gmp_initial: f64,
    /// Gradual magnitude pruning: step of the first pruning.
    #[arg(long, default_value_t = 0)]
    gmp_start: usize,
    /// Gradual magnitude pruning: steps between prunings.
    #[arg(long, default_value_t = 10)]
    gmp_every: usize,
    /// Gradual magnitude pruning: number of pruning steps after the first (default: as many as
    /// fit before the last 10 % of the steps).
    #[arg(long)]
    gmp_prunes: Option<usize>,
    /// Physically remove all-zero FFN neurons and key/value head groups before export.
    #[arg(long)]
    remove_zeroed: bool,
    /// Allow --out to be the input file.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    train: TrainOpts,
}

pub fn run(args: FinetuneArgs) -> Result<()> {
    let dtype = parse_target(&args.to)?;
    check_output_path(&args.model, &args.out, args.force)?;
    args.train.apply_threads()?;
    let checkpoints = args.train.checkpoint_dir()?;

    let gguf = open_model(&args.model)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let template = ChatTemplate::from_gguf(&gguf, &tokenizer)?;
    let model = DenseModel::from_gguf(&gguf)?;
    drop(gguf);

    let masks = if args.no_masks {
        MaskSet::new()
    } else if let Some(path) = &args.masks {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        MaskSet::from_safetensors(&model, &bytes)?
    } else {
        MaskSet::from_zeros(&model)?
    };
    let before = SparsityReport::measure(&model)?;
    eprintln!(
        "model: {} layers, {:.1} M parameters, projection sparsity {:.2} %; {} matrices masked ({} weights stay zero)",
        model.layers.len(),
        model.config.n_params() as f64 / 1e6,
        100.0 * before.sparsity(),
        masks.len(),
        masks.n_pruned()?
    );

    let lora = args.lora_rank.map(|rank| LoraConfig {
        alpha: args.lora_alpha.unwrap_or(2.0 * rank as f64),
        ..LoraConfig::new(rank)
    });
    let default_lr = if lora.is_some() { 1e-3 } else { 5e-5 };
    let mut config = args.train.config(default_lr);
    config.lora = lora;
    config.penalty = penalty(&args)?;
    config.gmp = gmp(&args);

    let corpus_data = load_corpus(&args.data)?;
    let (train, eval) = corpus::prepare(
        &corpus_data,
        &tokenizer,
        &template,
        config.seq_len,
        model.config.vocab_size,
        args.train.eval_fraction,
        args.train.seed,
    )?;
    training::print_data_report("training data", &train.report, config.seq_len);
    if let Some(eval) = &eval {
        training::print_data_report("held-out data", &eval.report, config.seq_len);
    }

    let mut trainer = if args.train.resume {
        let dir = checkpoints.as_ref().expect("checked by checkpoint_dir");
        let (path, bytes) = training::read_latest_checkpoint(dir)?;
        let trainer = Trainer::resume(model, config, train, eval, &bytes)
            .with_context(|| format!("resuming from {}", path.display()))?;
        eprintln!(
            "resuming from {} at step {}",
            path.display(),
            trainer.step_count()
        );
        trainer
    } else {
        Trainer::new(model, config, masks, train, eval)?
    };
    eprintln!(
        "training {:.2} M values ({})",
        trainer.n_trained_params() as f64 / 1e6,
        if args.lora_rank.is_some() {
            "LoRA adapters"
        } else {
            "all weights"
        }
    );

    let summary = training::run(&mut trainer, &args.train, checkpoints.as_ref())?;
    eprintln!(
        "{} steps in {:.1} s, {:.0} tokens/s",
        summary.steps,
        summary.seconds,
        summary.n_tokens as f64 / summary.seconds.max(1e-9)
    );

    let mut model = trainer.into_model()?;
    if args.remove_zeroed {
        let removed = model.remove_zeroed_groups()?;
        eprintln!(
            "removed {} FFN neurons and {} key/value heads",
            removed.removed_ffn_neurons(),
            removed.removed_kv_heads()
        );
    }
    let after = SparsityReport::measure(&model)?;
    let bytes = model.to_gguf(dtype)?.write(&args.out)?;
    println!(
        "wrote {} ({}), projection sparsity {:.2} %",
        args.out.display(),
        super::megabytes(bytes),
        100.0 * after.sparsity()
    );
    Ok(())
}

fn penalty(args: &FinetuneArgs) -> Result<Option<SparsePenalty>> {
    if args.l1 == 0.0 && args.group_ffn == 0.0 && args.group_kv == 0.0 {
        if args.penalty_ramp.is_some() {
            return Err(anyhow!(
                "--penalty-ramp needs a penalty: set --l1, --group-ffn or --group-kv"
            ));
        }
        return Ok(None);
    }
    let ramp = match &args.penalty_ramp {
        None => PenaltyRamp::Constant,
        Some(text) => {
            let parsed = text
                .split_once(':')
                .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
            let (start_step, end_step) = parsed.ok_or_else(|| anyhow!("invalid --penalty-ramp \"{text}\": expected START:END, two step numbers such as 0:500"))?;
            PenaltyRamp::Linear {
                start_step,
                end_step,
            }
        }
    };
    Ok(Some(SparsePenalty {
        l1: args.l1,
        group_ffn: args.group_ffn,
        group_kv: args.group_kv,
        ramp,
    }))
}

fn gmp(args: &FinetuneArgs) -> Option<GmpSchedule> {
    let final_sparsity = args.gmp_final?;
    let every = args.gmp_every.max(1);
    let last_step = args.train.steps - args.train.steps / 10;
    let n_prunes = args
        .gmp_prunes
        .unwrap_or_else(|| last_step.saturating_sub(args.gmp_start) / every);
    Some(GmpSchedule {
        initial_sparsity: args.gmp_initial,
        final_sparsity,
        start_step: args.gmp_start,
        prune_every: every,
        n_prunes,
    })
}
