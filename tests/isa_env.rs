//! `TK_ISA` forces the ISA of calls that do not name one; the API override wins
//! over it. (Its own test binary: the variable is read once per process.)

use transformer_kernels::softmax::{self, Algorithm, Softmax, Variant};
use transformer_kernels::{Isa, isa};

#[test]
fn env_var_then_api_override() {
    // SAFETY: the only test in this binary, set before any thread reads the env.
    unsafe { std::env::set_var("TK_ISA", "scalar") };
    assert_eq!(isa::selected(), Ok(Isa::Scalar));
    let plan = Softmax::new().plan::<f32>(1, 100).unwrap();
    assert_eq!(plan.name, "tk_softmax_f32_scalar_threepass");
    let mut y = [0.0f32; 3];
    softmax::softmax(&[1.0f32, 2.0, 3.0], &mut y, 3).unwrap();
    assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-6);

    let best = isa::detected();
    isa::set_override(Some(best)).unwrap();
    assert_eq!(isa::selected(), Ok(best));
    isa::set_override(None).unwrap();
    assert_eq!(isa::selected(), Ok(Isa::Scalar));

    // defaults by size on the widest ISA: three-pass while cached, two-pass once it streams
    if best >= Isa::Avx512 {
        let opts = Softmax::new().isa(Isa::Avx512);
        let algo = |p: &Variant| p.algorithm;
        assert_eq!(
            algo(opts.plan::<f32>(4, 1000).unwrap()),
            Algorithm::ThreePass
        );
        assert_eq!(
            algo(opts.plan::<f32>(1024, 1024).unwrap()),
            Algorithm::ThreePass
        );
        assert_eq!(
            algo(opts.plan::<f32>(1, 1 << 24).unwrap()),
            Algorithm::TwoPass
        );
        assert_eq!(
            algo(opts.plan::<half::bf16>(4096, 8192).unwrap()),
            Algorithm::TwoPass
        );
    }
    // a level without a variant for a dtype runs the next level down that has one
    if Isa::Avx512Bf16.is_available() {
        let opts = Softmax::new().isa(Isa::Avx512Bf16);
        let name = |p: &Variant| p.name;
        assert_eq!(
            name(opts.plan::<half::bf16>(4096, 8192).unwrap()),
            "tk_softmax_bf16_avx512bf16_twopass"
        );
        assert_eq!(
            name(opts.plan::<f32>(4096, 8192).unwrap()),
            "tk_softmax_f32_avx512_twopass"
        );
    }
    if Isa::Avx2.is_available() {
        let avx2 = Softmax::new().isa(Isa::Avx2);
        assert_eq!(
            avx2.plan::<f32>(1, 1 << 26).unwrap().algorithm,
            Algorithm::ThreePass
        );
    }
}
