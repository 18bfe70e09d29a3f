//! The CUDA kernels' index arithmetic, barriers and fragment layouts checked
//! without a GPU: each `kernels-cuda/emu/*_check.cpp` includes a kernel file
//! after the CPU stand-in for CUDA (`kernels-cuda/emu/emu.h`), is compiled by
//! the host C++ compiler against the CUDA headers that came with nvcc, runs
//! the kernels on small shapes and compares them with f64 references. Timing
//! and memory ordering are not modelled: the GPU tests (`cuda_*.rs`, on a lent
//! device) stay the judge; this catches what can be caught before one.
#![cfg(feature = "cuda")]

use std::path::Path;
use std::process::Command;

fn run_check(name: &str) {
    let include = env!("TK_CUDA_INCLUDE");
    assert!(
        !include.is_empty(),
        "the CUDA headers (cuda_fp16.h) were not found next to nvcc when building"
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("kernels-cuda/emu")
        .join(format!("{name}.cpp"));
    let exe = std::env::temp_dir().join(format!("tk-emu-{name}-{}", std::process::id()));
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let built = Command::new(&cxx)
        .args([
            "-std=c++20",
            "-O1",
            "-pthread",
            // no a * b + c fused where the CUDA code rounds the product
            "-ffp-contract=off",
            "-Wall",
            "-Wno-unknown-pragmas",
            // as nvcc: int against unsigned compares are the kernels' own business
            "-Wno-sign-compare",
            // GCC's note that a 64-byte aligned struct (a kernel argument
            // holding a tensor map) is passed by value differently since 4.6
            "-Wno-psabi",
            "-Werror",
            "-I",
            include,
        ])
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cxx}: {e}"));
    assert!(
        built.status.success(),
        "{cxx} failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&built.stderr)
    );
    let ran = Command::new(&exe).output().expect("run the check");
    let _ = std::fs::remove_file(&exe);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    println!("{stdout}");
    assert!(
        ran.status.success(),
        "{name} failed:\n{stdout}{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

#[test]
fn lightning_kernels_on_the_cpu_stand_in() {
    run_check("lightning_check");
}

#[test]
fn kron_tensor_core_kernel_on_the_cpu_stand_in() {
    run_check("kron_check");
}

#[test]
fn norm_kernels_on_the_cpu_stand_in() {
    run_check("norm_check");
}

#[test]
fn softmax_kernels_on_the_cpu_stand_in() {
    run_check("softmax_check");
}

#[test]
fn int8_gemm_on_the_cpu_stand_in() {
    run_check("qgemm_check");
}

#[test]
fn weight_only_gemv_on_the_cpu_stand_in() {
    run_check("wgemv_check");
}
