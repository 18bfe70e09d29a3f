//! Multi-threaded calls give the single-thread results bit for bit, for every
//! family, with thread counts below, at and above the machine's cores, and
//! shapes that leave a ragged last chunk.

use half::{bf16, f16};
use proptest::prelude::*;
use transformer_kernels::kron::{Factor, Kron};
use transformer_kernels::lightning::{Grads, Layout, Lightning, Shape};
use transformer_kernels::norm::Norm;
use transformer_kernels::parallel::Threads;
use transformer_kernels::qgemm::weight_only::QuantizedWeight;
use transformer_kernels::qgemm::{Backend, Int8Weight, Int8Workspace, Outliers};
use transformer_kernels::reference::uniform_values;
use transformer_kernels::softmax::Softmax;
use transformer_kernels::{Dtype, Element};

fn values<T: Element>(seed: u64, n: usize, amp: f32) -> Vec<T> {
    uniform_values(seed, n, amp)
        .into_iter()
        .map(T::from_f32)
        .collect()
}

fn bits<T: Element>(v: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

fn zeros<T: Element>(n: usize) -> Vec<T> {
    vec![T::from_f32(0.0); n]
}

const THREADS: [Threads; 4] = [
    Threads::Count(2),
    Threads::Count(3),
    Threads::Count(7),
    Threads::Pool,
];

fn softmax_and_norm<T: Element>(rows: usize, cols: usize, seed: u64) {
    let x = values::<T>(seed, rows * cols, 5.0);
    let r0 = values::<T>(seed + 1, rows * cols, 5.0);
    let gamma = uniform_values(seed + 2, cols, 1.0);
    let mut want = zeros::<T>(x.len());
    Softmax::new().log(true).run(&x, &mut want, cols).unwrap();
    let norm = Norm::layer_norm().gamma(&gamma);
    let (mut r, mut y, mut q, mut s) = (
        r0.clone(),
        zeros::<T>(x.len()),
        vec![0i8; x.len()],
        vec![0f32; rows],
    );
    let (mut mean, mut rstd) = (vec![0f32; rows], vec![0f32; rows]);
    norm.forward(&x, cols)
        .residual(&mut r)
        .output(&mut y)
        .quantized(&mut q, &mut s)
        .stats(&mut mean, &mut rstd)
        .run()
        .unwrap();
    let dy = values::<T>(seed + 3, rows * cols, 1.0);
    let dh = values::<T>(seed + 4, rows * cols, 1.0);
    let backward = |norm: Norm| {
        let (mut dx, mut dg, mut db) = (zeros::<T>(x.len()), vec![0f32; cols], vec![0f32; cols]);
        norm.backward(&dy, &r, &mean, &rstd, cols)
            .residual_grad(&dh)
            .dx(&mut dx)
            .dgamma(&mut dg)
            .dbeta(&mut db)
            .run()
            .unwrap();
        (bits(&dx), bits(&dg), bits(&db))
    };
    let grads = backward(norm);
    for t in THREADS {
        assert!(
            backward(norm.threads(t)) == grads,
            "norm backward {t:?} {rows}x{cols}"
        );
        let mut got = zeros::<T>(x.len());
        Softmax::new()
            .log(true)
            .threads(t)
            .run(&x, &mut got, cols)
            .unwrap();
        assert_eq!(bits(&got), bits(&want), "softmax {t:?} {rows}x{cols}");
        let (mut r2, mut y2, mut q2, mut s2) = (
            r0.clone(),
            zeros::<T>(x.len()),
            vec![0i8; x.len()],
            vec![0f32; rows],
        );
        let (mut mean2, mut rstd2) = (vec![0f32; rows], vec![0f32; rows]);
        norm.threads(t)
            .forward(&x, cols)
            .residual(&mut r2)
            .output(&mut y2)
            .quantized(&mut q2, &mut s2)
            .stats(&mut mean2, &mut rstd2)
            .run()
            .unwrap();
        assert_eq!(bits(&r2), bits(&r), "norm residual {t:?}");
        assert_eq!(bits(&y2), bits(&y), "norm y {t:?}");
        assert_eq!(q2, q, "norm q {t:?}");
        assert_eq!(
            (bits(&s2), bits(&mean2), bits(&rstd2)),
            (bits(&s), bits(&mean), bits(&rstd))
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn softmax_and_norm_threads_change_nothing(rows in 1usize..300, cols in 1usize..700, seed in 0u64..1000, d in 0usize..3) {
        match Dtype::ALL[d] {
            Dtype::F32 => softmax_and_norm::<f32>(rows, cols, seed),
            Dtype::F16 => softmax_and_norm::<f16>(rows, cols, seed),
            Dtype::Bf16 => softmax_and_norm::<bf16>(rows, cols, seed),
        }
    }
}

#[test]
fn large_rows_split_and_agree() {
    // Large enough that every thread count above really splits.
    softmax_and_norm::<f32>(257, 1024, 1);
    softmax_and_norm::<bf16>(130, 4096, 2);
    // the norm backward's most chunks (64 of 256 rows) and a ragged last one
    softmax_and_norm::<f16>(64 * 256 - 13, 64, 3);
}

#[test]
fn kron_threads_change_nothing() {
    let (n1, n2, tokens) = (12, 64, 301);
    let n = n1 * n2;
    let p1 = uniform_values(3, n1 * n1, 1.0);
    let k = Kron::new(
        Factor::dense(&p1, n1).unwrap(),
        Factor::hadamard(n2).unwrap(),
    );
    let x = values::<f16>(4, tokens * n, 3.0);
    let rb = transformer_kernels::kron::int4_row_bytes(n);
    let (mut y, mut q, mut s) = (
        zeros::<f16>(x.len()),
        vec![0u8; tokens * rb],
        vec![0f32; tokens],
    );
    k.apply(&x)
        .output(&mut y)
        .int4(&mut q, &mut s)
        .run()
        .unwrap();
    for t in THREADS {
        let (mut y2, mut q2, mut s2) = (
            zeros::<f16>(x.len()),
            vec![0u8; tokens * rb],
            vec![0f32; tokens],
        );
        k.apply(&x)
            .output(&mut y2)
            .int4(&mut q2, &mut s2)
            .threads(t)
            .run()
            .unwrap();
        assert_eq!(
            (bits(&y2), &q2, bits(&s2)),
            (bits(&y), &q, bits(&s)),
            "{t:?}"
        );
    }
    // A caller workspace for two threads: used as two slots.
    let mut ws = vec![0f32; 2 * k.workspace_floats()];
    let (mut y3, mut q3, mut s3) = (
        zeros::<f16>(x.len()),
        vec![0u8; tokens * rb],
        vec![0f32; tokens],
    );
    k.apply(&x)
        .output(&mut y3)
        .int4(&mut q3, &mut s3)
        .workspace(&mut ws)
        .threads(Threads::Count(4))
        .run()
        .unwrap();
    assert_eq!((bits(&y3), &q3, bits(&s3)), (bits(&y), &q, bits(&s)));
}

fn lightning_case(shape: Shape, layout: Layout) {
    let op = Lightning::new().layout(layout);
    let (qk, vo, st) = (
        shape.len(shape.dk).unwrap(),
        shape.len(shape.dv).unwrap(),
        shape.state_len().unwrap(),
    );
    let (q, k, v) = (
        values::<bf16>(5, qk, 1.0),
        values::<bf16>(6, qk, 1.0),
        values::<bf16>(7, vo, 1.0),
    );
    let decay: Vec<f32> = (0..shape.heads).map(|h| 0.9 + 0.01 * h as f32).collect();
    let s0 = uniform_values(8, st, 0.5);
    let (mut o, mut sf) = (zeros::<bf16>(vo), vec![0f32; st]);
    op.forward(&q, &k, &v, &mut o, &decay, shape)
        .initial_state(&s0)
        .final_state(&mut sf)
        .run()
        .unwrap();
    let dout = values::<bf16>(9, vo, 1.0);
    let (mut dq, mut dk, mut dv, mut ds0) = (
        zeros::<bf16>(qk),
        zeros::<bf16>(qk),
        zeros::<bf16>(vo),
        vec![0f32; st],
    );
    op.backward(
        &q,
        &k,
        &v,
        &dout,
        Grads {
            dq: &mut dq,
            dk: &mut dk,
            dv: &mut dv,
        },
        &decay,
        shape,
    )
    .initial_state(&s0)
    .dfinal_state(&s0)
    .dinitial_state(&mut ds0)
    .run()
    .unwrap();
    for t in THREADS {
        let op = op.threads(t);
        let (mut o2, mut sf2) = (zeros::<bf16>(vo), vec![0f32; st]);
        op.forward(&q, &k, &v, &mut o2, &decay, shape)
            .initial_state(&s0)
            .final_state(&mut sf2)
            .run()
            .unwrap();
        assert_eq!(
            (bits(&o2), bits(&sf2)),
            (bits(&o), bits(&sf)),
            "forward {t:?} {shape:?}"
        );
        let (mut dq2, mut dk2, mut dv2, mut ds02) = (
            zeros::<bf16>(qk),
            zeros::<bf16>(qk),
            zeros::<bf16>(vo),
            vec![0f32; st],
        );
        op.backward(
            &q,
            &k,
            &v,
            &dout,
            Grads {
                dq: &mut dq2,
                dk: &mut dk2,
                dv: &mut dv2,
            },
            &decay,
            shape,
        )
        .initial_state(&s0)
        .dfinal_state(&s0)
        .dinitial_state(&mut ds02)
        .run()
        .unwrap();
        assert_eq!(
            (bits(&dq2), bits(&dk2), bits(&dv2), bits(&ds02)),
            (bits(&dq), bits(&dk), bits(&dv), bits(&ds0)),
            "backward {t:?} {shape:?}"
        );
    }
}

/// Decoding steps split by sequences (several) or by heads (one sequence).
fn lightning_decode_case(batch: usize, heads: usize, dk: usize, dv: usize) {
    let rows = batch * heads;
    let (q, k, v) = (
        values::<f16>(11, rows * dk, 1.0),
        values::<f16>(12, rows * dk, 1.0),
        values::<f16>(13, rows * dv, 1.0),
    );
    let decay: Vec<f32> = (0..heads).map(|h| 0.5 + 0.03 * h as f32).collect();
    let s0 = uniform_values(14, rows * dk * dv, 0.5);
    let (mut o, mut s) = (zeros::<f16>(rows * dv), s0.clone());
    let op = Lightning::new();
    op.decode(&q, &k, &v, &mut o, &mut s, &decay, dk, dv)
        .unwrap();
    for t in THREADS {
        let (mut o2, mut s2) = (zeros::<f16>(rows * dv), s0.clone());
        op.threads(t)
            .decode(&q, &k, &v, &mut o2, &mut s2, &decay, dk, dv)
            .unwrap();
        assert!(
            bits(&o2) == bits(&o) && bits(&s2) == bits(&s),
            "decode {t:?} {batch} x {heads}"
        );
    }
}

#[test]
fn lightning_threads_change_nothing() {
    lightning_decode_case(7, 3, 64, 64); // by sequences
    lightning_decode_case(1, 13, 64, 128); // by heads
    lightning_decode_case(2, 9, 16, 16); // below the split size
    let offsets = [0usize, 70, 75, 200, 330];
    for layout in [Layout::HeadsFirst, Layout::TokensFirst] {
        lightning_case(Shape::batch(5, 90, 3, 16, 32), layout); // by sequences
        lightning_case(Shape::batch(1, 150, 5, 32, 16), layout); // by heads
        lightning_case(Shape::packed(&offsets, 2, 16, 16), layout); // packed sequences
        lightning_case(Shape::packed(&[0, 130], 3, 16, 16), layout); // one packed sequence, by heads
    }
}

/// The LLM.int8() product in tiles of row parts x channel runs: every
/// backend here, a channel count no strip width divides, fixed and dynamic
/// outliers, a bias; from one row (channels alone split) to several parts.
#[test]
fn int8_product_tiles_change_nothing() {
    let (n, k) = (1000, 512);
    let w = values::<f32>(14, n * k, 1.0);
    let bias = values::<f32>(15, n, 1.0);
    let weights = [
        Int8Weight::prepare(&w, n, k, Outliers::Dynamic { threshold: 6.0 }).unwrap(),
        Int8Weight::prepare(&w, n, k, Outliers::Fixed(vec![3, 300])).unwrap(),
    ];
    for iw in &weights {
        for backend in Backend::ALL.into_iter().filter(|b| b.is_available()) {
            for m in [1usize, 7, 40, 100] {
                let mut x = values::<f32>(16, m * k, 2.0);
                x[m / 2 * k + 11] = 9.0;
                let mut ws = Int8Workspace::new(iw, m, 8).unwrap();
                let mut want = zeros::<bf16>(m * n);
                iw.matmul(&mut ws)
                    .backend(backend)
                    .bias(&bias)
                    .run(&x, &mut want)
                    .unwrap();
                for t in THREADS {
                    let mut got = zeros::<bf16>(m * n);
                    iw.matmul(&mut ws)
                        .backend(backend)
                        .bias(&bias)
                        .threads(t)
                        .run(&x, &mut got)
                        .unwrap();
                    assert!(bits(&got) == bits(&want), "{} m={m} {t:?}", backend.name());
                }
            }
        }
    }
}

#[test]
fn qgemm_threads_change_nothing() {
    let (n, k) = (200, 256);
    let w = values::<f32>(10, n * k, 1.0);
    let iw = Int8Weight::prepare(&w, n, k, Outliers::Dynamic { threshold: 6.0 }).unwrap();
    for m in [1usize, 33, 100, 300] {
        let mut x = values::<bf16>(11, m * k, 2.0);
        x[k / 2] = bf16::from_f32(20.0);
        if m == 300 {
            // outlier columns found only in the rows of a later thread's
            // part of the column scan (one of them NaN)
            x[250 * k + 7] = bf16::from_f32(-9.0);
            x[299 * k + 9] = bf16::NAN;
        }
        let mut ws = Int8Workspace::new(&iw, m, 8).unwrap();
        let mut want = zeros::<f16>(m * n);
        iw.matmul(&mut ws).run(&x, &mut want).unwrap();
        let (want_cols, want_q) = (
            ws.outlier_columns().to_vec(),
            ws.quantized_row(m - 1).to_vec(),
        );
        if m == 300 {
            assert_eq!(want_cols, [7, 9, k as u32 / 2]);
        }
        for t in THREADS {
            let mut got = zeros::<f16>(m * n);
            iw.matmul(&mut ws).threads(t).run(&x, &mut got).unwrap();
            assert!(bits(&got) == bits(&want), "int8 m={m} {t:?}");
            assert_eq!(ws.outlier_columns(), want_cols, "outliers m={m} {t:?}");
            assert_eq!(ws.quantized_row(m - 1), want_q, "q m={m} {t:?}");
        }
    }
    // Several runs of channels per worker, each worker converting x once:
    // on the VNNI and the SIMD kernel, and with an x the SIMD kernel scales
    // weight by weight (a value >= 2^100, which overflows the other way).
    let (n, k) = (1000, 512);
    let w = values::<f32>(12, n * k, 1.0);
    let plain = values::<f32>(13, 3 * k, 1.0);
    let mut huge = plain.clone();
    huge[k + 5] = 1.7e38;
    for bits_ in [8u32, 4] {
        let qw = QuantizedWeight::quantize(&w, n, k, bits_, 128).unwrap();
        for (x, vnni) in [(&plain, true), (&plain, false), (&huge, false)] {
            let mut want = zeros::<f32>(3 * n);
            qw.gemv(x).vnni(vnni).run(&mut want).unwrap();
            assert!(want.iter().all(|v| v.is_finite()));
            for t in THREADS {
                let mut got = zeros::<f32>(3 * n);
                qw.gemv(x).vnni(vnni).threads(t).run(&mut got).unwrap();
                assert_eq!(bits(&got), bits(&want), "gemv int{bits_} vnni {vnni} {t:?}");
            }
        }
    }
}
