#![no_main]
//! The canonical CBOR reader, driven by a sequence of reads chosen by the input.
//!
//! Input: `n` (1 byte), then `n % 64 + 1` op bytes, then the CBOR bytes. The ops are applied
//! in a cycle until the input is consumed or a read fails. Every successful read is checked
//! against the encoder: the bytes it consumed must be exactly what `Enc` writes for the value
//! read, which is what "one value, one encoding" means.

use cairn_core::cbor::{Dec, Enc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 64) + 1;
    if rest.len() < n {
        return;
    }
    let (ops, input) = rest.split_at(n);
    let mut d = Dec::new(input);
    let mut prev = None;
    let pos = |d: &Dec| d.err("").pos;
    for &op in ops.iter().cycle().take(4096) {
        let start = pos(&d);
        let mut e = Enc::new();
        let ok = match op % 16 {
            0 => d.u64().map(|v| {
                e.u64(v);
            }),
            1 => d.u32().map(|v| {
                e.u64(v.into());
            }),
            2 => d.u8().map(|v| {
                e.u64(v.into());
            }),
            3 => d.i64().map(|v| {
                e.i64(v);
            }),
            4 => d.bytes().map(|v| {
                e.bytes(v);
            }),
            5 => d.fixed::<16>().map(|v| {
                e.bytes(&v);
            }),
            6 => d.fixed::<32>().map(|v| {
                e.bytes(&v);
            }),
            7 => d.text().map(|v| {
                e.text(v);
            }),
            8 => d.bool().map(|v| {
                e.bool(v);
            }),
            9 => d.array().map(|v| {
                e.array(v);
            }),
            10 => d.map().map(|v| {
                e.map(v);
            }),
            11 => d.key(&mut prev).map(|v| {
                e.key(v);
            }),
            12 => d.enter(),
            13 => {
                d.leave();
                Ok(())
            }
            14 => d.finish(),
            _ => {
                prev = None;
                Ok(())
            }
        };
        let end = pos(&d);
        assert!(start <= end && end <= input.len(), "position out of range");
        match ok {
            Ok(()) => assert_eq!(
                &input[start..end],
                &e.buf[..],
                "non-canonical read (op {op})"
            ),
            Err(_) => break,
        }
        if end == input.len() && op % 16 < 12 {
            break;
        }
    }
});
