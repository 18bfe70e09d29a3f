//! CPU instruction-set detection and dispatch control.
//!
//! The best ISA is detected once. Any variant can be forced, for every call
//! with [`set_override`] or the `TK_ISA` environment variable (`scalar`, `avx2`,
//! `avx512`, `avx512bf16`; read once, the API override wins), or per call
//! through each family's options, so tests and benches reach every variant on
//! one machine.
//!
//! A level need not compile every (family, dtype): a call runs the variant of
//! the highest level at or below the chosen one that has it ([`Isa::at_or_below`]).
//! `avx512bf16` holds only the bf16 variants of softmax and the norms.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, Result};
use crate::ffi::tk_isa;

/// An instruction set that CPU kernel variants are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable C; available everywhere.
    Scalar,
    /// x86-64 AVX2 with FMA and F16C.
    Avx2,
    /// x86-64 AVX-512 F, BW, DQ and VL.
    Avx512,
    /// AVX-512 as above plus AVX512_BF16 (Cooper Lake, Sapphire Rapids and
    /// later, Zen 4 and later): f32 -> bf16 rounding in one instruction
    /// (`vcvtneps2bf16`) instead of nine. Only bf16 softmax and norm variants
    /// are compiled for it, the memory-bound kernels where that rounding is a
    /// visible share of the work; everything else runs its `Avx512` variant.
    Avx512Bf16,
}

impl Isa {
    /// Every ISA, from the most portable to the widest.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16];

    /// This level, then each lower one, widest first: where a call looks for
    /// a compiled variant when this level has none for its (family, dtype).
    pub fn at_or_below(self) -> impl Iterator<Item = Isa> {
        Isa::ALL[..=self as usize].iter().rev().copied()
    }

    /// Lower-case name, as accepted by `TK_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Bf16 => "avx512bf16",
        }
    }

    /// Parses a name as written by [`Isa::name`].
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name() == name.trim().to_ascii_lowercase())
    }

    /// Whether this CPU (and build target) can run this ISA's variants.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Bf16 => {
                Isa::Avx512.is_available() && std::arch::is_x86_feature_detected!("avx512bf16")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    pub(crate) fn from_ffi(i: tk_isa) -> Isa {
        match i {
            tk_isa::TK_ISA_SCALAR => Isa::Scalar,
            tk_isa::TK_ISA_AVX2 => Isa::Avx2,
            tk_isa::TK_ISA_AVX512 => Isa::Avx512,
            tk_isa::TK_ISA_AVX512BF16 => Isa::Avx512Bf16,
        }
    }

    /// Ok(self) when available, the typed error otherwise.
    pub fn require(self) -> Result<Isa> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(Error::UnsupportedIsa { isa: self })
        }
    }
}

/// The widest ISA this CPU supports (detected once).
pub fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Scalar)
    })
}

const NO_OVERRIDE: u8 = u8::MAX;
static OVERRIDE: AtomicU8 = AtomicU8::new(NO_OVERRIDE);

/// Forces every later call (that does not name its own ISA) onto `isa`, or
/// restores automatic selection with `None`. Fails for an unavailable ISA.
pub fn set_override(isa: Option<Isa>) -> Result<()> {
    let code = match isa {
        Some(i) => i.require()? as u8,
        None => NO_OVERRIDE,
    };
    OVERRIDE.store(code, Ordering::Relaxed);
    Ok(())
}

/// `TK_ISA`, read once: None when unset or empty.
fn env_choice() -> Result<Option<Isa>> {
    static ENV: OnceLock<Result<Option<Isa>>> = OnceLock::new();
    ENV.get_or_init(|| match std::env::var("TK_ISA") {
        Ok(s) if !s.trim().is_empty() => match Isa::from_name(&s) {
            Some(i) => i.require().map(Some),
            None => Err(Error::UnknownIsaName { name: s }),
        },
        _ => Ok(None),
    })
    .clone()
}

/// The ISA a call uses when it does not name one: the API override, else
/// `TK_ISA`, else [`detected`].
pub fn selected() -> Result<Isa> {
    match OVERRIDE.load(Ordering::Relaxed) {
        NO_OVERRIDE => Ok(env_choice()?.unwrap_or_else(detected)),
        code => Ok(Isa::ALL[code as usize]),
    }
}

/// Reads `data` with the fastest single-core read the project knows
/// (kernels-cpu/probe: AVX-512 loads with software prefetch; on AVX2 the
/// four quarters of each 1 MiB block in lockstep, 1.3-1.5x one stream on a
/// Zen 1 core) and returns the wrapping sum of its 64-bit words, for reports
/// that state a memory-bound kernel's fraction of the read bandwidth; time
/// it yourself. None where neither ISA is available.
///
/// ```
/// let words: Vec<u64> = (1..=1000).collect();
/// if let Some(sum) = transformer_kernels::isa::read_probe(&words) {
///     assert_eq!(sum, 500_500);
/// }
/// ```
pub fn read_probe(data: &[u64]) -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        let (p, bytes) = (data.as_ptr().cast(), std::mem::size_of_val(data));
        // SAFETY: the ISA is checked; each probe reads exactly data's bytes.
        if Isa::Avx512.is_available() {
            return Some(unsafe { crate::ffi::tk_read_probe_avx512(p, bytes) });
        }
        if Isa::Avx2.is_available() {
            return Some(unsafe { crate::ffi::tk_read_probe_avx2(p, bytes) });
        }
    }
    let _ = data;
    None
}

/// Runs the single-core f32 FMA peak probe of `isa` (kernels-cpu/probe:
/// `iters` rounds of 24 independent vector FMAs) and returns the flops it did,
/// for reports that state a kernel's fraction of the peak; time it yourself.
/// None for the scalar ISA or one this CPU lacks.
pub fn fma_probe(isa: Isa, iters: usize) -> Option<f64> {
    if !isa.is_available() {
        return None;
    }
    let mut sink = 0.0f32;
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: this CPU runs `isa` (checked); sink is a valid f32.
        let flops = match isa {
            Isa::Avx512 | Isa::Avx512Bf16 => unsafe {
                crate::ffi::tk_fma_probe_avx512(iters, &mut sink)
            },
            Isa::Avx2 => unsafe { crate::ffi::tk_fma_probe_avx2(iters, &mut sink) },
            Isa::Scalar => return None,
        };
        std::hint::black_box(sink);
        Some(flops)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (iters, &mut sink);
        None
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::Isa;

    /// Each read probe returns the wrapping sum of the buffer's 64-bit
    /// words, the last one zero-padded, at every byte count to 600 (the
    /// quarters, the lines and the tail all with remainders) and at 3 MiB + 300 (three
    /// blocks, a short one, a tail) from every start offset within a word.
    #[test]
    fn read_probes_sum_every_word_once() {
        type Probe = unsafe extern "C" fn(*const std::ffi::c_void, usize) -> u64;
        let probes: [(Isa, Probe); 2] = [
            (Isa::Avx2, crate::ffi::tk_read_probe_avx2),
            (Isa::Avx512, crate::ffi::tk_read_probe_avx512),
        ];
        let buf: Vec<u8> = (0..(3 << 20) + 308)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        let want = |b: &[u8]| {
            b.chunks(8).fold(0u64, |s, w| {
                let mut v = [0u8; 8];
                v[..w.len()].copy_from_slice(w);
                s.wrapping_add(u64::from_le_bytes(v))
            })
        };
        for (isa, probe) in probes.into_iter().filter(|(i, _)| i.is_available()) {
            let cases = (0..=600)
                .map(|n| (0, n))
                .chain((0..8).map(|o| (o, (3 << 20) + 300)));
            for (start, n) in cases {
                let b = &buf[start..start + n];
                // SAFETY: the ISA is available; the probe reads b's n bytes
                let got = unsafe { probe(b.as_ptr().cast(), n) };
                assert_eq!(
                    got,
                    want(b),
                    "{} probe, {n} bytes at offset {start}",
                    isa.name()
                );
            }
        }
    }
}
