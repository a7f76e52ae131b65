//! For any valid packet, `decode(encode(p)) == p`, in the packet's version.
#![no_main]

use arbitrary::Unstructured;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shardmq::protocol::{decode, encode, generate, MAX_PACKET_SIZE};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(version) = generate::version(&mut u) else { return };
    let Ok(packet) = generate::packet(&mut u, version) else { return };
    let mut buf = BytesMut::new();
    encode(&packet, version, &mut buf).expect("a generated packet encodes");
    let decoded = decode(&mut buf, version, MAX_PACKET_SIZE)
        .expect("an encoded packet decodes")
        .expect("an encoded packet is complete");
    assert_eq!(decoded, packet);
    assert!(buf.is_empty(), "encode wrote more than one packet");
});
