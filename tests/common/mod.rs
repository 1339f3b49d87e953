//! Helpers shared by the native integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use prunechat::gguf::Gguf;

/// Path of the Q8_0 SmolLM2-135M-Instruct file that `scripts/fetch-model.sh` produces.
pub fn smollm2_q8_0() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/smollm2-135m-instruct-q8_0.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-model.sh (or `make model`) first",
        path.display()
    );
    path
}

pub fn smollm2_q4_1() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-model.sh (or `make model`) first",
        path.display()
    );
    path
}

pub fn load_smollm2() -> Gguf {
    Gguf::open(smollm2_q8_0()).expect("the Q8_0 model loads")
}

/// Reads the llama.cpp reference recorded by `scripts/make_llama_cpp_fixtures.py`.
pub fn llama_cpp_reference() -> serde_json::Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_cpp_reference.json");
    let text = std::fs::read_to_string(&path).expect("fixture file is readable");
    serde_json::from_str(&text).expect("fixture file is JSON")
}

pub fn ids(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .expect("an array of ids")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
