//! Options and the step loop that `finetune` and `train` share: progress bar, evaluation
//! lines, checkpoints, a JSONL log, and Ctrl-C handling.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use prunechat::error::Error;
use prunechat::train::checkpoint::CheckpointDir;
use prunechat::train::optim::AdamWParams;
use prunechat::train::{TrainConfig, Trainer};

#[derive(Args, Clone)]
pub struct TrainOpts {
    /// Optimizer steps.
    #[arg(long)]
    pub steps: usize,
    /// Peak learning rate (default: 1e-3 with --lora-rank, 5e-5 for full fine-tuning, 2e-3 from scratch).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Maximum tokens per sequence; longer samples are truncated (and counted).
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Steps of linear learning-rate warmup (default: 5 % of --steps).
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// The cosine decay ends at this fraction of the peak learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub min_lr_ratio: f64,
    /// Decoupled AdamW weight decay on matrices.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm (0 turns clipping off).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Evaluate on the held-out split every this many steps (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Fraction of the documents held out for evaluation (0 disables evaluation).
    #[arg(long, default_value_t = 0.1)]
    pub eval_fraction: f64,
    /// Seed of the sample order, the LoRA initialization and the held-out split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Directory for checkpoints (step-NNNNNNNN.safetensors); needed for --resume.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Write a checkpoint every this many steps (and at the end, and on Ctrl-C).
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Number of newest checkpoints to keep.
    #[arg(long, default_value_t = 2)]
    pub keep_checkpoints: usize,
    /// Continue from the newest checkpoint in --checkpoint-dir, with the same options.
    #[arg(long)]
    pub resume: bool,
    /// Append one JSON line per step to this file.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Threads for candle's CPU kernels (sets RAYON_NUM_THREADS). Its worker threads spin
    /// while they wait, so on a busy machine 1 thread can be faster than more.
    #[arg(long)]
    pub threads: Option<usize>,
}

impl TrainOpts {
    /// Applies --threads. Call before the first tensor operation, which starts candle's pool.
    pub fn apply_threads(&self) -> Result<()> {
        if let Some(n) = self.threads {
            if n == 0 {
                return Err(anyhow!("invalid --threads: must be at least 1, got 0"));
            }
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
        Ok(())
    }

    /// Builds the trainer configuration, with `default_lr` when --lr is absent.
    pub fn config(&self, default_lr: f64) -> TrainConfig {
        TrainConfig {
            steps: self.steps,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            seq_len: self.seq_len,
            lr: self.lr.unwrap_or(default_lr),
            warmup_steps: self.warmup_steps.unwrap_or(self.steps / 20),
            min_lr_ratio: self.min_lr_ratio,
            optimizer: AdamWParams {
                weight_decay: self.weight_decay,
                ..AdamWParams::default()
            },
            max_grad_norm: self.max_grad_norm,
            eval_every: if self.eval_every == 0 {
                self.steps
            } else {
                self.eval_every
            },
            seed: self.seed,
            ..TrainConfig::default()
        }
    }

    pub fn checkpoint_dir(&self) -> Result<Option<CheckpointDir>> {
        if self.resume && self.checkpoint_dir.is_none() {
            return Err(anyhow!(
                "--resume needs --checkpoint-dir, the directory the interrupted run wrote to"
            ));
        }
        self.checkpoint_dir
            .as_ref()
            .map(|d| Ok(CheckpointDir::new(d, self.keep_checkpoints)?))
            .transpose()
    }
}

/// Reads the newest checkpoint for `--resume`.
pub fn read_latest_checkpoint(dir: &CheckpointDir) -> Result<(PathBuf, Vec<u8>)> {
    let path = dir.latest()?.ok_or_else(|| {
        anyhow!(
            "--resume: {} contains no step-*.safetensors checkpoint",
            dir.dir.display()
        )
    })?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok((path, bytes))
}

/// Summary of a finished run.
pub struct RunSummary {
    pub steps: usize,
    pub seconds: f64,
    pub n_tokens: usize,
}

/// Runs `trainer` to its last step with a progress bar. Writes checkpoints every
/// `checkpoint_every` steps, at the end, and when Ctrl-C is pressed (then returns an error
/// telling how to resume). On a non-finite loss it stops and names the last good checkpoint.
pub fn run(
    trainer: &mut Trainer,
    opts: &TrainOpts,
    checkpoints: Option<&CheckpointDir>,
) -> Result<RunSummary> {
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second handler cannot be installed in the same process; training still works
        // without one, so that error is ignored.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let mut log = match &opts.log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the log {}", path.display()))?,
        ),
        None => None,
    };

    let total = trainer.config().steps as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .expect("static template"),
    );
    bar.set_position(trainer.step_count() as u64);

    // The held-out loss before any update is the baseline the later evaluations compare with.
    if trainer.step_count() == 0 && trainer.has_eval_data() {
        let eval = trainer.evaluate()?;
        bar.suspend(|| {
            eprintln!(
                "step {:>6}: held-out loss {:.4} ({} target tokens)",
                0, eval.loss, eval.n_targets
            )
        });
        if let Some(file) = log.as_mut() {
            writeln!(file, "{}", serde_json::json!({"eval": eval})).context("writing the log")?;
        }
    }

    let mut last_checkpoint: Option<PathBuf> = checkpoints.and_then(|c| c.latest().ok().flatten());
    let start = Instant::now();
    let mut n_tokens = 0;
    let mut steps = 0;
    while !trainer.is_done() {
        let t0 = Instant::now();
        let report = match trainer.step() {
            Ok(r) => r,
            Err(e @ Error::NonFinite { .. }) => {
                bar.abandon();
                let hint = match &last_checkpoint {
                    Some(p) => format!("the last good checkpoint is {}", p.display()),
                    None => {
                        "no checkpoint was written (pass --checkpoint-dir to keep them)".to_string()
                    }
                };
                return Err(anyhow!("{e}; {hint}"));
            }
            Err(e) => {
                bar.abandon();
                return Err(e.into());
            }
        };
        let seconds = t0.elapsed().as_secs_f64();
        n_tokens += report.n_tokens;
        steps += 1;

        let mut message = format!(
            "loss {:.4}  lr {:.2e}  {:.0} tokens/s",
            report.loss,
            report.lr,
            report.n_tokens as f64 / seconds
        );
        if let Some(s) = &report.sparsity {
            message.push_str(&format!(
                "  sparsity {:.1} %  zero neurons {}/{}  zero kv groups {}/{}",
                100.0 * s.sparsity(),
                s.n_zero_ffn_neurons,
                s.n_ffn_neurons,
                s.n_zero_kv_groups,
                s.n_kv_groups
            ));
        }
        bar.set_message(message);
        bar.set_position(report.step as u64);
        if let Some(eval) = &report.eval {
            // suspend() also prints when the bar is hidden because stderr is not a terminal.
            bar.suspend(|| {
                eprintln!(
                    "step {:>6}: held-out loss {:.4} ({} target tokens)",
                    eval.step, eval.loss, eval.n_targets
                )
            });
        }
        if let Some(target) = report.pruned_to {
            bar.suspend(|| {
                eprintln!(
                    "step {:>6}: pruned every projection matrix to {:.1} % sparsity",
                    report.step,
                    100.0 * target
                )
            });
        }
        if let Some(file) = log.as_mut() {
            let line = serde_json::json!({"report": &report, "seconds": seconds});
            writeln!(file, "{line}").context("writing the log")?;
        }

        let checkpoint_due = report.step % opts.checkpoint_every.max(1) == 0 || trainer.is_done();
        let stop = interrupted.load(Ordering::SeqCst);
        if let Some(dir) = checkpoints {
            if checkpoint_due || stop {
                last_checkpoint = Some(dir.save(trainer)?);
            }
        }
        if stop && !trainer.is_done() {
            bar.abandon();
            return Err(match &last_checkpoint {
                Some(p) => anyhow!(
                    "interrupted after step {}; the checkpoint {} has the run's state: run the same command with --resume to continue",
                    trainer.step_count(),
                    p.display()
                ),
                None => anyhow!("interrupted after step {}; no checkpoint was written (pass --checkpoint-dir to be able to resume)", trainer.step_count()),
            });
        }
    }
    bar.finish();
    Ok(RunSummary {
        steps,
        seconds: start.elapsed().as_secs_f64(),
        n_tokens,
    })
}

/// Prints what the data preparation did, including truncated and dropped samples.
pub fn print_data_report(what: &str, report: &prunechat::train::batch::DataReport, seq_len: usize) {
    eprintln!(
        "{what}: {} samples, {} target tokens{}{}",
        report.n_samples - report.n_dropped,
        report.n_target_tokens,
        if report.n_truncated > 0 {
            format!(
                ", {} truncated to {} tokens",
                report.n_truncated,
                seq_len + 1
            )
        } else {
            String::new()
        },
        if report.n_dropped > 0 {
            format!(", {} dropped (no target token)", report.n_dropped)
        } else {
            String::new()
        },
    );
}
