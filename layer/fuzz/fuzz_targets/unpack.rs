//! Arbitrary bytes as a layer: unpacking may fail, but nothing may appear
//! or change next to the destination.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sandbox) = tempfile::tempdir() else { return };
    let root = sandbox.path().join("root");
    if std::fs::create_dir(&root).is_err() || std::fs::write(sandbox.path().join("victim"), b"x").is_err() {
        return;
    }
    let _ = orc_layer::unpack(data, &root);
    let mut names: Vec<_> = std::fs::read_dir(sandbox.path())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    names.sort();
    assert_eq!(names, ["root", "victim"], "the layer escaped its directory");
    assert_eq!(std::fs::read(sandbox.path().join("victim")).ok().as_deref(), Some(&b"x"[..]));
});
