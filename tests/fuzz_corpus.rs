//! The fuzz targets' checks (`fuzz/checks.rs`) on the kept corpus and on every input
//! that once broke one, under plain `cargo test`: what fuzzing found stays fixed
//! without a nightly toolchain.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/NAME`; how many there were.
fn replay(name: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails its check", path.display());
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
    n
}

#[test]
fn request_head_corpus() {
    replay("request_head", checks::request_head);
}

#[test]
fn response_head_corpus() {
    replay("response_head", checks::response_head);
}

#[test]
fn chunked_corpus() {
    replay("chunked", checks::chunked);
}

#[test]
fn config_corpus() {
    replay("config", checks::config);
}

#[test]
fn static_path_corpus() {
    replay("static_path", checks::static_path);
}

#[test]
fn h2_frames_corpus() {
    replay("h2_frames", checks::h2_frames);
}

#[test]
fn hpack_corpus() {
    replay("hpack", checks::hpack);
}

/// The checks themselves can fail: the reference and the decoder are compared, and
/// a decoder that dropped a byte would be caught.
#[test]
fn the_chunked_checks_catch_a_wrong_decoding() {
    let wire = b"5\r\nhello\r\n0\r\n\r\n";
    let decoded = checks::decode(wire, &[0]);
    assert_eq!(decoded, checks::reference_decode(wire));
    let checks::Decoded::Complete { body, used, .. } = decoded else {
        panic!("{decoded:?}");
    };
    assert_eq!((body.as_slice(), used), (&b"hello"[..], wire.len()));
    assert_eq!(
        checks::reference_decode(b"5\r\nhell"),
        checks::Decoded::Incomplete
    );
    assert_eq!(
        checks::reference_decode(b"5\nhello"),
        checks::Decoded::Invalid
    );
}
