//! Builds the C microkernels (one static library per ISA flag set), optionally
//! regenerates the FFI bindings, and with `--features cuda` compiles
//! kernels-cuda/ into one fatbin that src/cuda embeds.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One C source file per ISA, with the flags that file alone is compiled with.
/// The portable files build everywhere; the x86 ones only for x86-64 targets.
struct CpuUnit {
    lib: &'static str,
    files: &'static [&'static str],
    x86_only: bool,
    /// Flag groups, concatenated.
    flags: &'static [&'static [&'static str]],
}

const AVX2: &[&str] = &["-mavx2", "-mfma", "-mf16c"];
const AVX512: &[&str] = &[
    "-mavx512f",
    "-mavx512bw",
    "-mavx512dq",
    "-mavx512vl",
    "-mfma",
    "-mf16c",
];

const CPU_UNITS: &[CpuUnit] = &[
    CpuUnit {
        lib: "tk_scalar",
        files: &[
            "kernels-cpu/softmax/scalar.c",
            "kernels-cpu/softmax/variants.c",
            "kernels-cpu/norm/scalar.c",
            "kernels-cpu/norm/variants.c",
            "kernels-cpu/lightning/scalar.c",
            "kernels-cpu/lightning/variants.c",
            "kernels-cpu/kron/scalar.c",
            "kernels-cpu/kron/variants.c",
            "kernels-cpu/qgemm/scalar.c",
            "kernels-cpu/qgemm/variants.c",
        ],
        x86_only: false,
        flags: &[],
    },
    CpuUnit {
        lib: "tk_avx2",
        files: &[
            "kernels-cpu/softmax/avx2.c",
            "kernels-cpu/norm/avx2.c",
            "kernels-cpu/lightning/avx2.c",
            "kernels-cpu/kron/avx2.c",
            "kernels-cpu/qgemm/avx2.c",
            "kernels-cpu/qgemm/avx2_gemm.c",
            "kernels-cpu/qgemm/wgemv_int4_avx2.c",
            "kernels-cpu/probe/avx2.c",
        ],
        x86_only: true,
        flags: &[AVX2],
    },
    CpuUnit {
        lib: "tk_avx512",
        files: &[
            "kernels-cpu/softmax/avx512.c",
            "kernels-cpu/norm/avx512.c",
            "kernels-cpu/lightning/avx512.c",
            "kernels-cpu/kron/avx512.c",
            "kernels-cpu/qgemm/avx512.c",
            "kernels-cpu/probe/avx512.c",
        ],
        x86_only: true,
        flags: &[AVX512],
    },
    // The avx512bf16 level: bf16 variants of the memory-bound families,
    // where the f32 -> bf16 rounding is a visible share of the work.
    CpuUnit {
        lib: "tk_avx512bf16",
        files: &[
            "kernels-cpu/softmax/avx512bf16.c",
            "kernels-cpu/norm/avx512bf16.c",
        ],
        x86_only: true,
        flags: &[AVX512, &["-mavx512bf16"]],
    },
    CpuUnit {
        lib: "tk_vnni",
        files: &["kernels-cpu/qgemm/vnni.c", "kernels-cpu/qgemm/wgemv_vnni.c"],
        x86_only: true,
        flags: &[AVX512, &["-mavx512vnni"]],
    },
    CpuUnit {
        lib: "tk_avxvnni",
        files: &["kernels-cpu/qgemm/avxvnni.c"],
        x86_only: true,
        flags: &[AVX2, &["-mavxvnni"]],
    },
    CpuUnit {
        lib: "tk_amx",
        files: &[
            "kernels-cpu/qgemm/amx.c",
            "kernels-cpu/qgemm/wgemv_amx.c",
            "kernels-cpu/qgemm/wgemv_int8_amx.c",
        ],
        x86_only: true,
        flags: &[AVX512, &["-mamx-tile", "-mamx-int8", "-mamx-bf16"]],
    },
];

/// Compiles one unit into the static library OUT_DIR/lib{unit.lib}.a (the
/// caller prints the link directives, in order).
fn compile_unit(unit: &CpuUnit, sanitize: Option<&str>) {
    let mut build = cc::Build::new();
    build
        .cargo_metadata(false)
        .include("kernels-cpu/include")
        .std("c11")
        .opt_level(3)
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-fno-math-errno");
    for flag in unit.flags.iter().copied().flatten() {
        build.flag(flag);
    }
    if let Some(s) = sanitize {
        build
            .flag(format!("-fsanitize={s}"))
            .flag("-fno-omit-frame-pointer");
    }
    build.files(unit.files).compile(unit.lib);
}

fn main() {
    println!("cargo:rerun-if-changed=kernels-cpu");
    println!("cargo:rerun-if-env-changed=TK_SANITIZE");
    // what cc would print with its metadata on (off: the link order is ours)
    for var in ["CC", "CFLAGS", "AR", "ARFLAGS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let is_x86_64 = target_arch == "x86_64";
    // TK_SANITIZE=address instruments the C objects (CI links the ASan runtime).
    let sanitize = env::var("TK_SANITIZE").ok().filter(|s| !s.is_empty());

    // Every unit in its own thread (cc's `parallel` feature splits a unit's
    // files too): the C kernels took 4 minutes of one core per build, and CI
    // builds them seven times on two cores. The link order is the table's.
    let units: Vec<&CpuUnit> = CPU_UNITS
        .iter()
        .filter(|u| is_x86_64 || !u.x86_only)
        .collect();
    std::thread::scope(|scope| {
        for unit in &units {
            let sanitize = &sanitize;
            scope.spawn(move || compile_unit(unit, sanitize.as_deref()));
        }
    });
    let out = env::var("OUT_DIR").expect("OUT_DIR");
    println!("cargo:rustc-link-search=native={out}");
    for unit in &units {
        println!("cargo:rustc-link-lib=static={}", unit.lib);
    }
    if !env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows") {
        println!("cargo:rustc-link-lib=m");
    }

    #[cfg(feature = "bindgen")]
    regenerate_bindings();

    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        build_cuda();
    }
    if env::var_os("CARGO_FEATURE_PEERS").is_some() {
        build_peers();
    }
}

/// Feature `peers`: the oneDNN and XNNPACK benchmark programs, linked
/// against the system's libraries, as executables in OUT_DIR whose paths the
/// report gets through `TK_PEER_*` (compile-time environment).
fn build_peers() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let peers: [(&str, &str, &[&str]); 3] = [
        (
            "TK_PEER_ONEDNN_LAYERNORM",
            "onednn_layernorm_bench",
            &["-ldnnl"],
        ),
        ("TK_PEER_ONEDNN_MATMUL", "onednn_matmul_bench", &["-ldnnl"]),
        (
            "TK_PEER_XNNPACK_SOFTMAX",
            "xnnpack_softmax_bench",
            &["-lXNNPACK", "-lm"],
        ),
    ];
    let compiler = cc::Build::new().opt_level(2).get_compiler();
    for (var, name, libs) in peers {
        let src = format!("scripts/{name}.c");
        println!("cargo:rerun-if-changed={src}");
        let exe = out.join(name);
        let status = compiler
            .to_command()
            .args(["-O2", "-Iscripts", &src, "-o"])
            .arg(&exe)
            .args(libs)
            .status()
            .expect("run the C compiler");
        assert!(
            status.success(),
            "feature peers: {src} did not build (needs libdnnl-dev, libxnnpack-dev, libpthreadpool-dev)"
        );
        println!("cargo:rustc-env={var}={}", exe.display());
    }
    println!("cargo:rerun-if-changed=scripts/bench_util.h");
}

/// Regenerates src/ffi/bindings.rs from kernels-cpu/include/tk.h. The file is
/// committed; CI regenerates it and fails if git sees a difference.
#[cfg(feature = "bindgen")]
fn regenerate_bindings() {
    let bindings = bindgen::Builder::default()
        .header("kernels-cpu/include/tk.h")
        .clang_arg("-D__x86_64__")
        .allowlist_item("tk_.*|TK_.*")
        .default_enum_style(bindgen::EnumVariation::Rust {
            non_exhaustive: false,
        })
        .derive_debug(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen failed on kernels-cpu/include/tk.h");
    let text = format!(
        "// Generated by bindgen from kernels-cpu/include/tk.h: do not edit.\n\
         // Regenerate with `cargo build --features bindgen`.\n{}",
        bindings
    );
    let path = Path::new("src/ffi/bindings.rs");
    if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(path, text).expect("cannot write src/ffi/bindings.rs");
    }
}

/// Finds nvcc: $NVCC, then $CUDA_HOME/bin or $CUDA_PATH/bin, then PATH, then
/// the project-local PyPI install described in the README (.cuda/).
fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = env::var_os("NVCC") {
        return Some(PathBuf::from(p));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = env::var_os(var) {
            let p = Path::new(&home).join("bin/nvcc");
            if p.exists() {
                return Some(p);
            }
        }
    }
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path) {
            let p = dir.join("nvcc");
            if p.exists() {
                return Some(p);
            }
        }
    }
    let local = Path::new(".cuda/lib/python3.11/site-packages/nvidia/cu13/bin/nvcc");
    local
        .exists()
        .then(|| local.canonicalize().unwrap_or(local.to_path_buf()))
}

const NVCC_RECIPE: &str = "python3 -m venv .cuda && .cuda/bin/pip install nvidia-cuda-nvcc==13.0.88 \
nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85 \
(then NVCC=.cuda/lib/python3.11/site-packages/nvidia/cu13/bin/nvcc)";

/// Compiles kernels-cuda/kernels.cu to one fatbin (sm_80 and sm_90 SASS,
/// compute_90 PTX) and kernels-cuda/qgemm_wgmma.cu to another (sm_90a),
/// writes ptxas' resource report next to them, and fails the build if any
/// kernel spills registers.
fn build_cuda() {
    println!("cargo:rerun-if-changed=kernels-cuda");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=CUDA_PATH");
    let nvcc = find_nvcc().unwrap_or_else(|| {
        panic!("feature `cuda` needs nvcc and none was found (NVCC, CUDA_HOME, CUDA_PATH, PATH). Install the pinned compiler from PyPI:\n  {NVCC_RECIPE}")
    });
    // the CUDA headers, for the tests that run the kernels on the CPU
    // stand-in (kernels-cuda/emu/); the PyPI layout and a toolkit alike keep
    // them in ../include from nvcc
    let include = nvcc
        .parent()
        .and_then(Path::parent)
        .map(|root| root.join("include"))
        .filter(|dir| dir.join("cuda_fp16.h").exists());
    if let Some(dir) = include {
        println!("cargo:rustc-env=TK_CUDA_INCLUDE={}", dir.display());
    } else {
        println!("cargo:rustc-env=TK_CUDA_INCLUDE=");
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let report = compile_fatbins_cached(&nvcc, &out);
    let spills: Vec<&str> = report
        .lines()
        .filter(|l| {
            l.contains("spill") && !l.contains(" 0 bytes spill stores, 0 bytes spill loads")
        })
        .collect();
    if !spills.is_empty() && env::var_os("TK_ALLOW_SPILLS").is_none() {
        panic!(
            "CUDA kernels spill registers (set TK_ALLOW_SPILLS=1 to build anyway):\n{}",
            spills.join("\n")
        );
    }
}

/// The fatbins src/cuda embeds: source, `-gencode` targets, output name.
/// Every kernel for sm_80 and sm_90 (+ compute_90 PTX); the Hopper-only ones
/// (wgmma, TMA, setmaxnreg) in their own fatbin for sm_90a alone, loaded on
/// compute capability 9.0.
const FATBINS: &[(&str, &[&str], &str)] = &[
    (
        "kernels-cuda/kernels.cu",
        &[
            "arch=compute_80,code=sm_80",
            "arch=compute_90,code=sm_90",
            "arch=compute_90,code=compute_90",
        ],
        "kernels.fatbin",
    ),
    (
        "kernels-cuda/qgemm_wgmma.cu",
        &["arch=compute_90a,code=sm_90a"],
        "kernels_sm90a.fatbin",
    ),
];

const NVCC_FLAGS: &[&str] = &[
    "--fatbin",
    "-O3",
    "-std=c++17",
    "-Xptxas",
    "-v",
    "-lineinfo",
    // compile the gencode targets in parallel (CI has 2 cores)
    "--threads",
    "0",
];

const PTXAS_REPORT: &str = "ptxas-report.txt";

/// Compiles [`FATBINS`] into `out` with ptxas' resource report beside them,
/// and returns the report. nvcc takes minutes on two cores, and each profile
/// (clippy's, release, a sanitizer build) would run it again on the same
/// sources, so the outputs are kept under `<target>/nvcc-cache/<key>` (or
/// `$TK_NVCC_CACHE/<key>`), the key hashing every file in kernels-cuda/, the
/// flags and `nvcc --version`.
fn compile_fatbins_cached(nvcc: &Path, out: &Path) -> String {
    println!("cargo:rerun-if-env-changed=TK_NVCC_CACHE");
    let root = env::var_os("TK_NVCC_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| out.ancestors().nth(4).unwrap_or(out).join("nvcc-cache"));
    let cached = root.join(format!("{:016x}", nvcc_cache_key(nvcc)));
    let names = FATBINS.iter().map(|f| f.2).chain([PTXAS_REPORT]);
    if names.clone().all(|n| cached.join(n).is_file()) {
        for name in names {
            std::fs::copy(cached.join(name), out.join(name)).expect("copy from the nvcc cache");
        }
        return std::fs::read_to_string(out.join(PTXAS_REPORT)).unwrap();
    }
    let report: String = FATBINS
        .iter()
        .map(|(src, gencodes, name)| compile_fatbin(nvcc, src, gencodes, &out.join(name)))
        .collect();
    std::fs::write(out.join(PTXAS_REPORT), &report).unwrap();
    // a cache that cannot be written only costs the next build its time;
    // files go in under a temporary name and are renamed, so a concurrent
    // build never reads half a file
    if std::fs::create_dir_all(&cached).is_ok() {
        for name in names {
            let tmp = cached.join(format!("{name}.{}", std::process::id()));
            if std::fs::copy(out.join(name), &tmp).is_ok() {
                let _ = std::fs::rename(&tmp, cached.join(name));
            }
        }
    }
    report
}

/// Hash of everything nvcc's output depends on: the sources (kernels-cuda/,
/// recursively, in path order), the flags and the compiler's version.
fn nvcc_cache_key(nvcc: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    fn files(dir: &Path, acc: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read kernels-cuda").flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, acc);
            } else {
                acc.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    files(Path::new("kernels-cuda"), &mut paths);
    paths.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in &paths {
        p.hash(&mut h);
        std::fs::read(p).expect("read a CUDA source").hash(&mut h);
    }
    format!("{FATBINS:?} {NVCC_FLAGS:?}").hash(&mut h);
    let version = Command::new(nvcc).arg("--version").output();
    version.map(|o| o.stdout).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Runs nvcc on one translation unit for the given `-gencode` targets and
/// returns ptxas' resource report; panics if nvcc fails.
fn compile_fatbin(nvcc: &Path, src: &str, gencodes: &[&str], fatbin: &Path) -> String {
    let mut cmd = Command::new(nvcc);
    cmd.args(NVCC_FLAGS);
    for g in gencodes {
        cmd.args(["-gencode", g]);
    }
    let output = cmd
        .arg("-o")
        .arg(fatbin)
        .arg(src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}\n{NVCC_RECIPE}", nvcc.display()));
    let report = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        panic!("nvcc failed on {src}:\n{report}");
    }
    report
}
