//! The `prunechat` command-line tool. It is native only; for wasm32 the binary is empty so
//! `cargo test --target wasm32-unknown-unknown` can build every target.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`prunechat info | head`) panics.
    // The default action ends the process quietly, as other command-line tools do.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_DFL before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(cli::run());
}

#[cfg(target_arch = "wasm32")]
fn main() {}
