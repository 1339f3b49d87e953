//! `.psparse` files: `sparse::read`, which also reads the embedded GGUF, then the metadata
//! steps on the result.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(gguf) = prunechat::sparse::read(bytes) {
        prunechat_fuzz::parse_model_metadata(&gguf);
    }
});
