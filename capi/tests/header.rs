//! `include/tfk.h` must be what cbindgen makes of the current source. Run with
//! `TFK_BLESS=1` to rewrite it after changing the ABI.

use std::path::Path;

#[test]
fn header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses the C ABI")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("utf-8 header");
    let path = dir.join("include/tfk.h");
    if std::env::var_os("TFK_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/tfk.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/tfk.h is stale: run TFK_BLESS=1 cargo test -p transformer-kernels-capi --test header"
    );
}
