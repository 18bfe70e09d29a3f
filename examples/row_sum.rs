//! Sum of one long softmax row's outputs (in f64), for every runnable f32 variant:
//! a quick look at accumulated error on rows far longer than the tests use.
//!
//! `cargo run --release --example row_sum -- 134217728`
use transformer_kernels::Dtype;
use transformer_kernels::softmax::{self, Softmax};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 27);
    let x = transformer_kernels::reference::uniform_values(1, n, 8.0);
    let mut y = vec![0.0f32; n];
    for v in softmax::variants()
        .iter()
        .filter(|v| v.isa.is_available() && v.dtype == Dtype::F32)
    {
        Softmax::new()
            .isa(v.isa)
            .algorithm(v.algorithm)
            .run(&x, &mut y, n)
            .unwrap();
        let total: f64 = y.iter().map(|&v| f64::from(v)).sum();
        println!(
            "{}: sum of outputs {total:.9} (error {:.2e})",
            v.name,
            (total - 1.0).abs()
        );
    }
}
