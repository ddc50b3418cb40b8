//! Any text as a join token: parsing returns a token or an error, never
//! panics, and a parsed token prints back to what it parsed from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orc_agent::cluster::token::JoinToken;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(t) = JoinToken::parse(text) {
        assert_eq!(t.to_string(), text.trim());
        assert_eq!(JoinToken::parse(&t.to_string()), Ok(t));
    }
});
