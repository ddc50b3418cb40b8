//! Any text as a service file: parsing returns a spec or an error naming
//! the file, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = orcctl::service_file::parse(text, "fuzz.yaml") {
        assert!(e.to_string().contains("fuzz.yaml"), "{e}");
    }
});
