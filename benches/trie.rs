//! Matching cost of the subscription trie and the shard index, one `BenchmarkId`
//! per number of subscriptions.
//!
//! The workload is a fleet of devices, each subscribed to its own topic
//! (`devices/<n>/events`), published to in random order (2^20 publishes, then
//! again) so that the lookups miss the CPU caches the way a busy broker's would. The target is under 1 µs per
//! publish at 1M subscriptions without wildcards.
//!
//! Run with `cargo bench --bench trie -- --warm-up-time 1 --measurement-time 3`.

use bytestring::ByteString;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use shardmq::topic::{Match, ShardIndex, ShardMask, SubscriptionTrie, TopicFilter, TopicName};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

/// Topics published to, in random order: enough that their trie paths do not stay
/// in the CPU caches.
const TOPICS: usize = 1 << 20;

/// Shards in the shard-index benches.
const SHARDS: usize = 8;

/// What the broker stores per subscription: QoS, option bits, subscription id.
#[derive(Clone, Copy)]
#[expect(
    dead_code,
    reason = "stands in for the broker's options: only its size matters here"
)]
struct Options {
    qos: u8,
    flags: u8,
    id: u32,
}

const OPTIONS: Options = Options {
    qos: 1,
    flags: 0,
    id: 0,
};

fn filter(s: String) -> TopicFilter {
    TopicFilter::new(s).expect("bench filters are valid")
}

/// Topics of pseudo-random devices below `n`, the same on every run (xorshift).
///
/// They are views of one buffer, laid out in the order they are used, as a broker's
/// topics are views of the read buffer it just filled: reading them costs no cache
/// misses, which are left to the structure being measured.
fn random_topics(n: usize) -> Vec<TopicName> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut text = String::new();
    let mut ends = Vec::with_capacity(TOPICS);
    for _ in 0..TOPICS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let device = state % n as u64;
        text.push_str(&format!("devices/{device}/events"));
        ends.push(text.len());
    }
    let buffer = ByteString::from(text);
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let topic = buffer.slice_ref(&buffer[start..end]);
            start = end;
            TopicName::new(topic).expect("bench topics are valid")
        })
        .collect()
}

/// `n` literal subscriptions, one per device.
fn literal_trie(n: usize) -> SubscriptionTrie<u64, Options> {
    let mut trie = SubscriptionTrie::new();
    for device in 0..n as u64 {
        trie.insert(&filter(format!("devices/{device}/events")), device, OPTIONS);
    }
    trie
}

/// `n` subscriptions, about 5% of them with wildcards: every 20th device also
/// takes `devices/<n>/#`, every 100th subscription is a `+/<n>/status` that sends
/// a root `+` branch down the big level, and a few backends and a share group
/// watch every device through `devices/+/events`.
fn mixed_trie(n: usize) -> SubscriptionTrie<u64, Options> {
    let mut trie = SubscriptionTrie::new();
    let mut added = 0;
    let mut device = 0u64;
    while added < n {
        trie.insert(&filter(format!("devices/{device}/events")), device, OPTIONS);
        added += 1;
        if device % 20 == 0 {
            trie.insert(&filter(format!("devices/{device}/#")), device, OPTIONS);
            added += 1;
        }
        if device % 100 == 0 {
            trie.insert(&filter(format!("+/{device}/status")), device, OPTIONS);
            added += 1;
        }
        device += 1;
    }
    for backend in 0..4 {
        trie.insert(
            &filter("devices/+/events".into()),
            u64::MAX - backend,
            OPTIONS,
        );
        let shared = filter("$share/workers/devices/+/events".into());
        trie.insert(&shared, u64::MAX - 100 - backend, OPTIONS);
    }
    trie
}

fn bench_match(c: &mut Criterion, name: &str, build: fn(usize) -> SubscriptionTrie<u64, Options>) {
    let mut group = c.benchmark_group(name);
    for size in SIZES {
        let trie = build(size);
        let topics = random_topics(size);
        let mut next = 0;
        group.bench_with_input(BenchmarkId::from_parameter(size), &trie, |b, trie| {
            b.iter(|| {
                next = (next + 1) % topics.len();
                let mut delivered = 0u64;
                trie.for_each_match(&topics[next], |m| match m {
                    Match::Direct { key, .. } => delivered += key,
                    Match::Shared { members, .. } => delivered += members.len() as u64,
                });
                black_box(delivered)
            });
        });
    }
    group.finish();
}

fn trie_match_literal(c: &mut Criterion) {
    bench_match(c, "trie_match_literal", literal_trie);
}

fn trie_match_mixed(c: &mut Criterion) {
    bench_match(c, "trie_match_mixed", mixed_trie);
}

/// One filter per device, as in the literal trie, spread over the shards, plus a
/// few wildcard filters so a lookup ORs several masks.
fn shard_index(n: usize) -> ShardIndex {
    let mut index = ShardIndex::new();
    for device in 0..n {
        index.add(&filter(format!("devices/{device}/events")), device % SHARDS);
    }
    index.add(&filter("devices/+/events".into()), 0);
    index.add(&filter("$share/workers/devices/#".into()), 1);
    index
}

fn shard_index_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard_index_lookup");
    for size in SIZES {
        let index = shard_index(size);
        let topics = random_topics(size);
        let mut next = 0;
        group.bench_with_input(BenchmarkId::from_parameter(size), &index, |b, index| {
            b.iter(|| {
                next = (next + 1) % topics.len();
                let mask: ShardMask = index.shards_for(&topics[next]);
                black_box(mask)
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    trie_match_literal,
    trie_match_mixed,
    shard_index_lookup
);
criterion_main!(benches);
