//! The proxy's route table: keys from the API (normalised as configurable-http-proxy does)
//! and longest-prefix matching by whole segments.

#![no_main]

use chp_proxy::routes::{key_segments, normalize_key};
use chp_proxy::trie::Trie;
use http_forward::path::Segments;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Lines before the last are route keys; the last line is the request path.
    let mut lines: Vec<&str> = text.split('\n').collect();
    let Some(path) = lines.pop() else {
        return;
    };
    let mut trie = Trie::default();
    let mut keys = Vec::new();
    for line in lines.iter().take(16) {
        let key = normalize_key(line);
        assert!(key.starts_with('/'));
        trie.insert(key_segments(&key), keys.len());
        keys.push(key);
    }
    for (i, key) in keys.iter().enumerate() {
        // The latest insert under a key wins.
        let found = trie.get_exact(key_segments(key)).copied();
        let last = keys
            .iter()
            .rposition(|k| key_segments(k).eq(key_segments(key)));
        assert_eq!(found, last, "key {i} {key:?}");
    }
    let Ok(segments) = Segments::parse(path) else {
        return;
    };
    let request: Vec<String> = segments.iter().map(|s| s.into_owned()).collect();
    if let Some((&index, depth)) = trie.longest_prefix(&request) {
        // The match covers whole segments of the request, exactly the key's.
        let key: Vec<&str> = key_segments(&keys[index]).collect();
        assert_eq!(key.len(), depth);
        assert!(depth <= request.len());
        assert!(key.iter().zip(&request).all(|(k, r)| k == r));
        // No longer stored key matches.
        for other in &keys {
            let other: Vec<&str> = key_segments(other).collect();
            if other.len() > depth && other.len() <= request.len() {
                assert!(!other.iter().zip(&request).all(|(k, r)| k == r));
            }
        }
    }
    for key in &keys {
        trie.remove(key_segments(key));
    }
    assert!(trie.is_empty());
});
