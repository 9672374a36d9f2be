//! Builds `datapath-ebpf` for the BPF target and leaves the object in OUT_DIR, where
//! `src/object.rs` embeds it.
//!
//! The kernel crate stays outside the workspace (so `cargo test --workspace` and
//! clippy never build it for the host), which aya-build cannot drive: it runs the
//! nested cargo in the parent workspace. This does the same steps from the kernel
//! crate's own directory: stable rustc builds `core` for BPF only with
//! RUSTC_BOOTSTRAP, scoped to this child cargo; bpf-linker (installed by
//! scripts/setup.sh) links with BTF.
use std::{env, path::PathBuf, process::Command};

fn main() {
    if let Err(message) = build() {
        eprintln!("error: building the eBPF programs failed: {message}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let ebpf_dir = manifest_dir.join("../datapath-ebpf");
    for watched in [
        "../datapath-ebpf/src",
        "../datapath-ebpf/Cargo.toml",
        "../datapath-common/src",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=PATH");
    let target_dir = out_dir.join("ebpf-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&ebpf_dir)
        .args([
            "build",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--bins",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            ["-Cdebuginfo=2", "-Clink-arg=--btf"].join("\x1f"),
        );
    for key in [
        "RUSTC",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(key);
    }
    let output = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{}\n(is bpf-linker on PATH? run `eval \"$(scripts/setup.sh)\"`)",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let built = target_dir.join("bpfel-unknown-none/release/datapath");
    std::fs::copy(&built, out_dir.join("datapath"))
        .map_err(|e| format!("copying {}: {e}", built.display()))?;
    Ok(())
}
