use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;

use prunechat::chat_template::ChatTemplate;
use prunechat::convert::parse_target;
use prunechat::data::{load_corpus, split_corpus};
use prunechat::gguf::Gguf;
use prunechat::model::dense::DenseModel;
use prunechat::tokenizer::Tokenizer;
use prunechat::train::masks::MaskSet;
use prunechat::train::{corpus, scratch, Trainer};

use super::training::{self, TrainOpts};

/// Name of the initial model (random weights and the trained tokenizer) in the checkpoint
/// directory, so a resumed run starts from the same file.
const INITIAL_MODEL: &str = "initial.gguf";

#[derive(Args)]
pub struct TrainArgs {
    /// Model size: tiny (about 3.7 M parameters).
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Training data (a corpus file or directory, as for `finetune`). Default:
    /// data/chatterbot-corpus/english, under the current directory or the repository.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Vocabulary size of the BPE tokenizer (default: the preset's).
    #[arg(long)]
    vocab_size: Option<usize>,
    /// Output GGUF file.
    #[arg(long)]
    out: PathBuf,
    /// Type of the output's matrices: f32, f16, q8_0, ...
    #[arg(long, default_value = "f32")]
    to: String,
    #[command(flatten)]
    train: TrainOpts,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let dtype = parse_target(&args.to)?;
    let preset = scratch::preset(&args.preset)?;
    args.train.apply_threads()?;
    let checkpoints = args.train.checkpoint_dir()?;
    let data_path = args.data.clone().unwrap_or_else(super::default_corpus);
    let corpus_data = load_corpus(&data_path)?;

    let initial_path = checkpoints.as_ref().map(|c| c.dir.join(INITIAL_MODEL));
    let gguf = match &initial_path {
        Some(path) if args.train.resume => {
            eprintln!(
                "resuming: initial model and tokenizer from {}",
                path.display()
            );
            Gguf::open(path).with_context(|| {
                format!("--resume needs {} from the interrupted run", path.display())
            })?
        }
        _ => {
            let (train_split, _) =
                split_corpus(&corpus_data, args.train.eval_fraction, args.train.seed)?;
            let vocab_size = args.vocab_size.unwrap_or(preset.vocab_size);
            let vocab = scratch::train_bpe(&scratch::corpus_texts(&train_split), vocab_size)?;
            eprintln!(
                "tokenizer: {} tokens, {} merges, trained on {} documents",
                vocab.tokens.len(),
                vocab.merges.len(),
                train_split.documents.len()
            );
            let gguf = scratch::init_model(&preset, &vocab, args.train.seed)?;
            if let Some(path) = &initial_path {
                gguf.write(path)?;
            }
            gguf
        }
    };
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let template = ChatTemplate::from_gguf(&gguf, &tokenizer)?;
    let model = DenseModel::from_gguf(&gguf)?;
    drop(gguf);
    eprintln!(
        "model: preset {}, {:.2} M parameters, {} layers, hidden size {}",
        preset.name,
        model.config.n_params() as f64 / 1e6,
        model.layers.len(),
        model.config.hidden_size
    );

    let config = args.train.config(2e-3);
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
        let dir = checkpoints
            .as_ref()
            .ok_or_else(|| anyhow!("--resume needs --checkpoint-dir"))?;
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
        Trainer::new(model, config, MaskSet::new(), train, eval)?
    };

    let summary = training::run(&mut trainer, &args.train, checkpoints.as_ref())?;
    eprintln!(
        "{} steps in {:.1} s, {:.0} tokens/s",
        summary.steps,
        summary.seconds,
        summary.n_tokens as f64 / summary.seconds.max(1e-9)
    );
    let model = trainer.into_model()?;
    let bytes = model.to_gguf(dtype)?.write(&args.out)?;
    println!("wrote {} ({})", args.out.display(), super::megabytes(bytes));
    Ok(())
}
