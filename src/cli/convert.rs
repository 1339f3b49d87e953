use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use prunechat::convert::{convert, parse_target};
use prunechat::fsutil::check_output_path;
use prunechat::sparse::open_model;

#[derive(Args)]
pub struct ConvertArgs {
    /// Input model file: GGUF, or .psparse as written by `prunechat prune --sparse-out`.
    input: PathBuf,
    /// Output GGUF file.
    output: PathBuf,
    /// Target type: f32, f16, bf16, q8_0, q5_0, q5_1, q4_0, q4_1, q6_k, q5_k, q4_k, q3_k, q2_k.
    #[arg(long, default_value = "q8_0")]
    to: String,
    /// Allow the output path to be the input file.
    #[arg(long)]
    force: bool,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let target = parse_target(&args.to)?;
    check_output_path(&args.input, &args.output, args.force)?;
    let gguf = open_model(&args.input)?;
    let input_bytes = gguf.file_bytes;

    let bar = ProgressBar::new(gguf.tensors.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len} tensors")
            .expect("static template"),
    );
    let (converted, report) = convert(gguf, target, |done, _, name| {
        bar.set_position(done as u64);
        bar.set_message(name.to_string());
    })?;
    bar.finish_and_clear();

    let bytes = converted.write(&args.output)?;
    let changed = report.iter().filter(|r| r.from != r.to).count();
    let fallback: Vec<&str> = report
        .iter()
        .filter(|r| r.to == "F16" && !args.to.eq_ignore_ascii_case("f16"))
        .map(|r| r.name.as_str())
        .collect();
    println!(
        "wrote {} ({}, was {}): {changed} of {} tensors converted to {}",
        args.output.display(),
        super::megabytes(bytes),
        super::megabytes(input_bytes),
        report.len(),
        args.to.to_ascii_uppercase()
    );
    if !fallback.is_empty() {
        println!(
            "stored as F16 because their rows do not fill whole blocks: {}",
            fallback.join(", ")
        );
    }
    Ok(())
}
