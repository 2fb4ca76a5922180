//! Links the `swamp` binary as a position-dependent executable on Linux.
//!
//! Every command starts a fresh process, so start-up is part of the guard
//! overhead users pay per command. As a PIE the binary carries ~57 000 dynamic
//! relocations that the loader applies on every start, dirtying ~230 pages of
//! `.data.rel.ro`; linked with `-no-pie` the linker resolves them once, and a
//! filesystem-datastore command starts ~1 ms faster (see bench/RESULTS.md, case 7).
//! The libraries stay position-independent; only the executable's own address
//! is fixed.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
