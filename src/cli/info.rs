use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use prunechat::gguf::dtype_name;
use prunechat::model::Config;
use prunechat::sparse::open_model;

#[derive(Args)]
pub struct InfoArgs {
    /// Model file: GGUF, or .psparse as written by `prunechat prune --sparse-out`.
    file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let gguf = open_model(&args.file)?;
    let config = Config::from_gguf(&gguf)?;
    let types = gguf.tensor_type_counts();

    if args.json {
        let tensors: Vec<serde_json::Value> = gguf
            .tensors
            .iter()
            .map(|(name, t)| serde_json::json!({"name": name, "type": dtype_name(t.dtype()), "shape": t.shape().dims()}))
            .collect();
        let out = serde_json::json!({
            "file": args.file,
            "file_bytes": gguf.file_bytes,
            "config": config,
            "n_params": config.n_params(),
            "tensor_types": types.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "tensors": tensors,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }

    println!("file          {}", args.file.display());
    println!("name          {}", config.name);
    println!("architecture  {}", config.architecture);
    println!(
        "size          {} ({} bytes)",
        super::megabytes(gguf.file_bytes),
        gguf.file_bytes
    );
    println!(
        "parameters    {} ({:.1} M)",
        config.n_params(),
        config.n_params() as f64 / 1e6
    );
    println!("vocabulary    {}", config.vocab_size);
    println!("hidden size   {}", config.hidden_size);
    println!("head dim      {}", config.head_dim);
    println!("context       {}", config.context_length);
    println!("rope theta    {}", config.rope_theta);
    println!("rms eps       {:e}", config.rms_norm_eps);
    println!(
        "output head   {}",
        if config.tied_embeddings {
            "tied to token_embd"
        } else {
            "separate"
        }
    );
    let types: Vec<String> = types.iter().map(|(t, n)| format!("{t} x{n}")).collect();
    println!("tensor types  {}", types.join(", "));
    println!();
    println!(
        "{:>5}  {:>7}  {:>8}  {:>8}",
        "layer", "n_heads", "n_kv", "ffn_dim"
    );
    for (l, dims) in config.layers.iter().enumerate() {
        println!(
            "{l:>5}  {:>7}  {:>8}  {:>8}",
            dims.n_heads, dims.n_kv_heads, dims.ffn_dim
        );
    }
    Ok(())
}
