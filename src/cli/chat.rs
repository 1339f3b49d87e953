use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use prunechat::sampler::SamplingParams;
use prunechat::session::{ChatSession, StopReason, DEFAULT_MAX_CONTEXT};
use prunechat::sparse::open_model;

#[derive(Args)]
pub struct ChatArgs {
    /// Model file: GGUF, or .psparse as written by `prunechat prune --sparse-out`.
    model: PathBuf,
    /// Reply to this one message and exit, instead of an interactive chat.
    #[arg(long)]
    prompt: Option<String>,
    /// System prompt; by default the chat template's own.
    #[arg(long)]
    system: Option<String>,
    /// Sampling temperature; 0 means greedy decoding.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Keep only the k most likely tokens (0 keeps all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Nucleus sampling threshold in (0, 1].
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
    /// Repetition penalty over the last 64 tokens (1 turns it off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Maximum number of tokens in each reply.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Maximum context in tokens; older turns are dropped when it fills.
    #[arg(long, default_value_t = DEFAULT_MAX_CONTEXT)]
    max_context: usize,
    /// Print timing after each reply.
    #[arg(long)]
    stats: bool,
}

pub fn run(args: ChatArgs) -> Result<()> {
    let params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repeat_penalty: args.repeat_penalty,
        seed: args.seed,
        max_new_tokens: args.max_new_tokens,
        ..SamplingParams::default()
    };
    params.validate()?;

    let t0 = Instant::now();
    let gguf = open_model(&args.model)?;
    let mut session = ChatSession::from_gguf(gguf, args.max_context)?;
    let info = session.info();
    eprintln!(
        "loaded {} ({:.1} M parameters, {} layers) in {:.2} s",
        info.name,
        info.n_params as f64 / 1e6,
        info.n_layers,
        t0.elapsed().as_secs_f64()
    );

    if let Some(prompt) = &args.prompt {
        return reply(&mut session, prompt, &args, &params);
    }

    eprintln!("type a message and press Enter; /reset starts a new chat, /quit or Ctrl-D exits");
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        eprint!("> ");
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(());
        }
        match line.trim() {
            "" => continue,
            "/quit" | "/exit" => return Ok(()),
            "/reset" => {
                session.reset();
                eprintln!("(new chat)");
            }
            message => {
                if let Err(e) = reply(&mut session, message, &args, &params) {
                    eprintln!("error: {e:#}");
                }
            }
        }
    }
}

fn reply(
    session: &mut ChatSession,
    message: &str,
    args: &ChatArgs,
    params: &SamplingParams,
) -> Result<()> {
    let t0 = Instant::now();
    let start = session.start_turn(message, args.system.as_deref(), params.clone())?;
    let prefill_s = t0.elapsed().as_secs_f64();
    if start.dropped_turns > 0 {
        eprintln!(
            "(dropped the {} oldest exchange(s) to fit the context of {} tokens)",
            start.dropped_turns,
            session.info().max_context
        );
    }

    let mut stdout = std::io::stdout().lock();
    let t1 = Instant::now();
    let (n_generated, reason) = loop {
        let step = session.next_token()?;
        stdout.write_all(step.text.as_bytes())?;
        stdout.flush()?;
        if step.done {
            break (step.n_generated, step.reason.unwrap_or(StopReason::Stopped));
        }
    };
    writeln!(stdout)?;
    let decode_s = t1.elapsed().as_secs_f64();

    if reason == StopReason::ContextFull {
        eprintln!(
            "(the reply stopped because the context of {} tokens is full)",
            session.info().max_context
        );
    }
    if args.stats {
        eprintln!(
            "prefill {} tokens in {:.0} ms ({:.1} tokens/s, {} reused); decode {} tokens at {:.1} tokens/s; stop: {:?}",
            start.prefill_tokens,
            prefill_s * 1e3,
            start.prefill_tokens as f64 / prefill_s,
            start.reused_tokens,
            n_generated,
            n_generated as f64 / decode_s,
            reason
        );
    }
    Ok(())
}
