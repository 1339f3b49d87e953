//! The `prunechat` command-line tool. It is native only; for wasm32 the binary is empty so
//! `cargo test --target wasm32-unknown-unknown` can build every target.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    std::process::exit(cli::run());
}

#[cfg(target_arch = "wasm32")]
fn main() {}
