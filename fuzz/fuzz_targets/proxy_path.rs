//! The proxy's path check (`http_forward::path`): any raw path is either refused or yields
//! segments a backend cannot read differently, and cutting a prefix off it stays in bounds.

#![no_main]

use http_forward::path::{Segments, join, raw_prefix_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(segments) = Segments::parse(raw) else {
        return;
    };
    let decoded: Vec<_> = segments.iter().collect();
    assert_eq!(decoded.len(), segments.len());
    assert_eq!(segments.is_empty(), decoded.is_empty());
    for segment in &decoded {
        // Nothing that would move a backend to another directory survives.
        assert!(segment != "." && segment != "..", "{raw:?}");
        assert!(!segment.contains(['/', '\\', '\0']), "{raw:?}");
    }
    // Decoding once more (as a backend that decodes twice would) does not reveal a
    // separator or a dot segment either.
    for segment in &decoded {
        if let Ok(twice) = percent_encoding::percent_decode_str(segment).decode_utf8() {
            assert!(twice != "." && twice != "..", "{raw:?}");
            assert!(!twice.contains(['/', '\\', '\0']), "{raw:?}");
        }
    }
    for n in 0..=decoded.len() + 1 {
        let cut = raw_prefix_len(raw, n);
        assert!(cut <= raw.len());
        assert!(raw.is_char_boundary(cut));
        let rest = &raw[cut..];
        let _ = join("/prefix/", Some("a=1"), rest, Some("b=2"));
    }
});
