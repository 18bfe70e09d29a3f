//! The kernels' extended exp on its own: `m * 2^e` against f64 `exp`, on every
//! ISA, over the whole range where the documented bound holds (|z| <= 2^20),
//! densely where softmax arguments live. States the exp error bound.

use transformer_kernels::Isa;
use transformer_kernels::softmax::{self, exp_extended};

/// Documented bound of the polynomial exp, relative error in units of 2^-24:
/// 3 for |z| <= 2^17; 5 up to 2^20, where the f32 log2(e) in n = round(z log2 e)
/// pushes the reduced argument past the polynomial's interval (|t| < 0.36).
const EXP_ULPS: f64 = 3.0;
const EXP_ULPS_WIDE: f64 = 5.0;

/// (worst error, where) over z.
fn worst_error(isa: Isa, z: &[f32]) -> (f64, f32) {
    let mut m = vec![0.0f32; z.len()];
    let mut e = vec![0.0f32; z.len()];
    exp_extended(isa, z, &mut m, &mut e).unwrap();
    let mut worst = (0.0f64, 0.0f32);
    for ((&zi, &mi), &ei) in z.iter().zip(&m).zip(&e) {
        // compare m with exp(z) / 2^e = exp(z - e ln 2), computed in f64
        let want = (f64::from(zi) - f64::from(ei) * std::f64::consts::LN_2).exp();
        let err = (f64::from(mi) - want).abs() / want * f64::powi(2.0, 24);
        assert!(
            (0.5..2.0).contains(&mi),
            "{isa:?}: z={zi}: mantissa {mi} outside [0.5, 2)"
        );
        if err > worst.0 {
            worst = (err, zi);
        }
    }
    worst
}

fn samples() -> Vec<f32> {
    let mut z: Vec<f32> = (0..2_000_000)
        .map(|i| -100.0 + 200.0 * (i as f32) / 2.0e6)
        .collect();
    // every float in one reduction interval around 0 and around 40 (all reduced arguments)
    let mut bits = 0.5f32.to_bits();
    while f32::from_bits(bits) < 0.9 {
        z.push(f32::from_bits(bits));
        z.push(-f32::from_bits(bits));
        bits += 1;
    }
    bits = 40.0f32.to_bits();
    while f32::from_bits(bits) < 40.7 {
        z.push(f32::from_bits(bits));
        bits += 1;
    }
    // large magnitudes up to 2^20, where the reduction is still exact
    z.extend((0..200_000).map(|i| (i as f32 - 100_000.0) * 10.485_76));
    z
}

#[test]
fn extended_exp_is_within_its_bound_on_every_isa() {
    let z = samples();
    for isa in Isa::ALL {
        if !isa.is_available() {
            eprintln!("SKIP {isa:?}: not available on this CPU");
            continue;
        }
        let (narrow, wide): (Vec<f32>, Vec<f32>) = z.iter().partition(|v| v.abs() <= 131072.0);
        for (set, bound) in [(narrow, EXP_ULPS), (wide, EXP_ULPS_WIDE)] {
            let (err, at) = worst_error(isa, &set);
            eprintln!("{isa:?}: worst exp error {err:.2} x 2^-24 at z = {at} (bound {bound})");
            assert!(
                err <= bound,
                "{isa:?}: exp error {err:.2} x 2^-24 at z = {at} exceeds {bound}"
            );
        }
    }
}

#[test]
fn extended_exp_special_values() {
    for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
        let z = [f32::NEG_INFINITY, f32::MAX, -f32::MAX, 1.0e30, -1.0e30, 0.0];
        let (mut m, mut e) = ([0.0f32; 6], [0.0f32; 6]);
        exp_extended(isa, &z, &mut m, &mut e).unwrap();
        assert!(m.iter().all(|v| v.is_finite()), "{isa:?}: {m:?}");
        assert_eq!(
            e[0],
            f32::NEG_INFINITY,
            "{isa:?}: exp(-inf) must be exactly 0"
        );
        assert!(e[1].is_finite() && e[2].is_finite(), "{isa:?}: {e:?}");
        assert_eq!((m[5], e[5]), (1.0, 0.0), "{isa:?}");
    }
}

/// The AVX2 three-pass kernel's exp of `d = z - max z <= 0` is the extended
/// exp's `m * 2^e` bit for bit (0 where `e <= -127`, as 2^e flushes there):
/// every float of one reduction interval, a dense sweep down to the underflow,
/// the edge around it, huge magnitudes and -inf.
#[test]
fn avx2_nonpositive_exp_is_the_extended_exp_bit_for_bit() {
    if !Isa::Avx2.is_available() {
        eprintln!("SKIP: no AVX2 on this CPU");
        return;
    }
    let mut d: Vec<f32> = (0..4_000_000).map(|i| -(i as f32) * 2.5e-5).collect();
    let mut bits = 0.5f32.to_bits();
    while f32::from_bits(bits) < 0.9 {
        d.push(-f32::from_bits(bits));
        bits += 1;
    }
    // d = -88 is where the kernel starts masking; n = -127 begins near -87.68
    bits = 87.0f32.to_bits();
    while f32::from_bits(bits) < 89.0 {
        d.push(-f32::from_bits(bits));
        bits += 7;
    }
    d.extend([
        -0.0,
        -1.0e-45,
        -103.0,
        -1.0e4,
        -3.0e6,
        -1.0e30,
        -f32::MAX,
        f32::NEG_INFINITY,
    ]);
    let mut y = vec![0.0f32; d.len()];
    softmax::exp_nonpositive(Isa::Avx2, &d, &mut y).unwrap();
    let (mut m, mut e) = (vec![0.0f32; d.len()], vec![0.0f32; d.len()]);
    exp_extended(Isa::Avx2, &d, &mut m, &mut e).unwrap();
    for i in 0..d.len() {
        let want = if e[i] <= -127.0 {
            0.0
        } else {
            m[i] * f32::from_bits(((e[i] as i32 + 127) as u32) << 23)
        };
        assert_eq!(
            y[i].to_bits(),
            want.to_bits(),
            "d = {}: {} against m 2^e = {} 2^{}",
            d[i],
            y[i],
            m[i],
            e[i]
        );
    }
    assert!(matches!(
        softmax::exp_nonpositive(Isa::Scalar, &d[..1], &mut y[..1]),
        Err(transformer_kernels::Error::NoVariant { .. })
    ));
}
