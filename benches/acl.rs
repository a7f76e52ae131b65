//! What one ACL decision costs, and that it does not grow with the file: the
//! same PUBLISH and SUBSCRIBE checks against files of 10, 1,000 and 100,000
//! `topic` rules (each with its own first level, as per-tenant rules are),
//! plus the Courier rules a device actually matches (`pattern` and `token`).
//!
//! Run with `cargo bench --bench acl -- --warm-up-time 1 --measurement-time 3`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytestring::ByteString;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use shardmq::acl::{Access, AclRules};
use shardmq::auth::Identity;

/// `n` filler rules, then the rules a Courier device matches.
fn rules(n: usize) -> AclRules {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!("topic tenant{i}/+/events label t{i}\n"));
    }
    text.push_str("pattern write devices/%c/out label device_out\n");
    text.push_str("token read courier/%(c, :, 3)/in label courier_in\n");
    text.push_str("token read tenants/%(j, tenant)/# label tenant\n");
    AclRules::parse(&text, "bench.acl").expect("the bench file parses")
}

fn device() -> Identity {
    let claims: BTreeMap<String, String> = [("tenant".to_owned(), "acme".to_owned())].into();
    Identity {
        username: Some("rider-1".into()),
        client_id: ByteString::from_static("device-1:owner-7:profile-42"),
        claims: Some(Arc::new(claims)),
    }
}

fn decisions(c: &mut Criterion) {
    let who = device();
    let mut group = c.benchmark_group("acl");
    for n in [10, 1_000, 100_000] {
        let acl = rules(n);
        let cases = [
            (
                "publish pattern",
                Access::Write,
                "devices/device-1:owner-7:profile-42/out",
            ),
            ("subscribe token", Access::Read, "courier/profile-42/in"),
            ("subscribe claim", Access::Read, "tenants/acme/#"),
            ("publish topic rule", Access::Write, "tenant7/x/events"),
            ("publish denied", Access::Write, "nowhere/at/all"),
        ];
        for (name, access, subject) in cases {
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| black_box(acl.check(&who, access, black_box(subject))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
