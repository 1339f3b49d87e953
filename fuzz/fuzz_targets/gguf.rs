//! GGUF files as the CLI and the page read them: `Gguf::read`, then the metadata steps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prunechat::gguf::Gguf;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(gguf) = Gguf::read(bytes) {
        prunechat_fuzz::parse_model_metadata(&gguf);
    }
});
