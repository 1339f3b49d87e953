//! Training checkpoints (safetensors): `Trainer::resume` against the runs of
//! `synthetic::tiny_run`, which wrote the seed checkpoints, then one training step, which the
//! CLI runs after resuming too. The same bytes also go to `MaskSet::from_safetensors`, the
//! mask-file reader, which shares the tensor conversion.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prunechat::synthetic::tiny_run;
use prunechat::train::masks::MaskSet;
use prunechat::train::Trainer;

fuzz_target!(|bytes: &[u8]| {
    for lora in [false, true] {
        let run = tiny_run(lora).expect("the tiny run builds");
        if lora {
            let _ = MaskSet::from_safetensors(&run.model, bytes);
        }
        if let Ok(mut trainer) = Trainer::resume(run.model, run.config, run.train, None, bytes) {
            if !trainer.is_done() {
                let _ = trainer.step();
            }
        }
    }
});
