//! Writes the seed corpora of the fuzz targets (fuzz/fuzz_targets/) from the synthetic models:
//! valid GGUF, `.psparse` and checkpoint files of the `TinySpec::smallest` model, plus
//! truncated and edited copies. Every run writes the same GGUF and `.psparse` bytes. The
//! checkpoints differ between runs only in the order of their metadata keys.
//!
//! Usage, from the repository root: `cargo run --release --example fuzz_seeds [-- OUT_DIR]`
//! (OUT_DIR defaults to fuzz/corpus; each target gets a subdirectory).

use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use prunechat::gguf::MetadataValue;
use prunechat::model::dense::{DenseModel, LinearKind};
use prunechat::prune::{Mask, TensorMask};
use prunechat::sparse::{self, ValueType};
use prunechat::synthetic::{tiny_llama, tiny_run, TinySpec};
use prunechat::train::Trainer;

/// A chat template with a system-prompt branch, a loop and `raise_exception`, written for the
/// seeds so that the fuzzer starts from more of minijinja's syntax than ChatML uses.
const TEMPLATE: &str = "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set rest = messages[1:] %}{% else %}{% set system = 'You are helpful.' %}{% set rest = messages %}{% endif %}{{ bos_token }}<|im_start|>system\n{{ system }}<|im_end|>\n{% for message in rest %}{% if message['role'] not in ['user', 'assistant'] %}{{ raise_exception('unknown role ' ~ message['role']) }}{% endif %}<|im_start|>{{ message['role'] }}\n{{ message['content'] | trim }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fuzz/corpus"));
    write_gguf_seeds(&out.join("gguf"))?;
    write_psparse_seeds(&out.join("psparse"))?;
    write_checkpoint_seeds(&out.join("checkpoint"))?;
    Ok(())
}

fn write_gguf_seeds(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let spec = TinySpec::smallest();
    let f32_bytes = tiny_llama(&spec)?.to_bytes()?;
    write(dir, "smallest-f32.gguf", &f32_bytes)?;
    write(dir, "truncated-header.gguf", &f32_bytes[..64])?;
    write(
        dir,
        "truncated-half.gguf",
        &f32_bytes[..f32_bytes.len() / 2],
    )?;

    let untied_f16 = TinySpec {
        dtype: GgmlDType::F16,
        tied_embeddings: false,
        ..TinySpec::smallest()
    };
    write(
        dir,
        "untied-f16.gguf",
        &tiny_llama(&untied_f16)?.to_bytes()?,
    )?;

    let mut templated = tiny_llama(&spec)?;
    templated.metadata.insert(
        "tokenizer.chat_template".into(),
        MetadataValue::String(TEMPLATE.into()),
    );
    write(dir, "chat-template.gguf", &templated.to_bytes()?)?;

    // Metadata that disagrees with the tensors: two layers declared, one stored.
    let mut mismatched = tiny_llama(&spec)?;
    mismatched
        .metadata
        .insert("llama.block_count".into(), MetadataValue::U32(2));
    write(dir, "block-count-mismatch.gguf", &mismatched.to_bytes()?)?;

    // The tokenizer alone, without weights.
    let mut metadata_only = tiny_llama(&spec)?;
    metadata_only.tensors.clear();
    write(dir, "metadata-only.gguf", &metadata_only.to_bytes()?)?;
    Ok(())
}

fn write_psparse_seeds(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let model = DenseModel::from_gguf(&tiny_llama(&TinySpec::smallest())?)?;
    let masks: Vec<TensorMask> = [LinearKind::AttnQ, LinearKind::FfnDown]
        .into_iter()
        .map(|kind| {
            let (rows, cols) = model.layers[0].linear(kind).as_tensor().dims2()?;
            Ok(TensorMask {
                name: kind.tensor_name(0),
                mask: Mask {
                    rows,
                    cols,
                    kept: (0..rows * cols).map(|i| i % 2 == 0).collect(),
                },
            })
        })
        .collect::<Result<_, candle_core::Error>>()?;
    let f32_bytes = sparse::to_bytes(&model, &masks, ValueType::F32)?;
    write(dir, "smallest-f32.psparse", &f32_bytes)?;
    write(
        dir,
        "smallest-f16.psparse",
        &sparse::to_bytes(&model, &masks, ValueType::F16)?,
    )?;
    write(
        dir,
        "truncated-sparse-part.psparse",
        &f32_bytes[..f32_bytes.len() - 10],
    )?;
    Ok(())
}

fn write_checkpoint_seeds(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    for (lora, name) in [(false, "full"), (true, "lora")] {
        let run = tiny_run(lora)?;
        let masks = run.masks.clone();
        let mut trainer = Trainer::new(run.model, run.config, run.masks, run.train, None)?;
        trainer.step()?;
        let bytes = trainer.checkpoint_bytes()?;
        // The checkpoint target resumes from these bytes with a new `tiny_run`, so the seed is
        // only useful while that run is the same.
        let fresh = tiny_run(lora)?;
        Trainer::resume(fresh.model, fresh.config, fresh.train, None, &bytes)?;
        write(dir, &format!("{name}-step-1.safetensors"), &bytes)?;
        if !lora {
            write(dir, "masks.safetensors", &masks.to_safetensors()?)?;
            write(dir, "truncated-full.safetensors", &bytes[..bytes.len() / 2])?;
        }
    }
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    println!("{} ({} bytes)", path.display(), bytes.len());
    Ok(())
}
