//! An unknown `TK_ISA` is a typed error at the first call, not a panic.

use transformer_kernels::{Error, isa, softmax};

#[test]
fn unknown_isa_name_is_an_error() {
    // SAFETY: the only test in this binary, set before any thread reads the env.
    unsafe { std::env::set_var("TK_ISA", "sse9") };
    assert_eq!(
        isa::selected(),
        Err(Error::UnknownIsaName {
            name: "sse9".into()
        })
    );
    let mut y = [0.0f32; 2];
    assert!(matches!(
        softmax::softmax(&[1.0f32, 2.0], &mut y, 2),
        Err(Error::UnknownIsaName { .. })
    ));
    assert_eq!(y, [0.0, 0.0]);
}
