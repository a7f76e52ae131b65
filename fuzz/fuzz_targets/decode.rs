//! Arbitrary bytes never panic the decoder, in any version, whatever the split.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shardmq::protocol::{decode, encode, Version};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else { return };
    let version = match selector % 3 {
        0 => Version::V3_1,
        1 => Version::V3_1_1,
        _ => Version::V5,
    };
    // A small maximum exercises the size check; a large one lets everything through.
    let max = if selector & 0x80 != 0 { 64 } else { 1 << 20 };
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = decode(&mut buf, version, max) {
        // Whatever decodes must encode again, and read back the same.
        let mut out = BytesMut::new();
        encode(&packet, version, &mut out).expect("a decoded packet encodes");
        let again = decode(&mut out, version, usize::MAX).expect("re-encoded packet decodes");
        assert_eq!(again.as_ref(), Some(&packet));
    }
});
