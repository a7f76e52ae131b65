//! What authenticating one CONNECT costs a shard, one `BenchmarkId` per
//! algorithm: a JWT verified in full (a client the shard has not seen) and
//! from the verified-token cache (a reconnect), then an argon2id password
//! check (default parameters) both ways.
//!
//! Uncached costs are what a reconnect storm of new clients pays per CONNECT;
//! cached costs are what the same fleet pays when it comes back.
//!
//! Run with `cargo bench --bench auth -- --warm-up-time 1 --measurement-time 3`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use shardmq::auth::{hash_password, JwtVerifier, PasswordChecker, PasswordFile};
use shardmq::config::JwtConfig;

const SECRET: &str = "a shared secret of 32 bytes or more";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("the fixture keys are committed")
}

/// The verifier for `alg` and a token it accepts for username `rider-1`.
fn setup(alg: Algorithm) -> (JwtVerifier, String) {
    let (key, mut config) = match alg {
        Algorithm::HS256 => (
            EncodingKey::from_secret(SECRET.as_bytes()),
            JwtConfig {
                secret: SECRET.to_owned(),
                ..JwtConfig::default()
            },
        ),
        Algorithm::RS256 => (
            EncodingKey::from_rsa_pem(&read("rsa-private.pem")).expect("RSA key"),
            pem_config("rsa-public.pem"),
        ),
        Algorithm::ES256 => (
            EncodingKey::from_ec_pem(&read("ec-p256-private.pem")).expect("EC key"),
            pem_config("ec-p256-public.pem"),
        ),
        _ => (
            EncodingKey::from_ed_pem(&read("ed25519-private.pem")).expect("Ed25519 key"),
            pem_config("ed25519-public.pem"),
        ),
    };
    config.algorithms = vec![format!("{alg:?}")];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let claims = serde_json::json!({ "rid": "rider-1", "iat": now, "exp": now + 3600 });
    let token = jsonwebtoken::encode(&Header::new(alg), &claims, &key).expect("signs");
    let verifier = JwtVerifier::from_config(&config).expect("fixture config loads");
    (verifier, token)
}

fn pem_config(public: &str) -> JwtConfig {
    JwtConfig {
        public_key_file: fixture(public),
        ..JwtConfig::default()
    }
}

fn jwt(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt_verify");
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let (verifier, token) = setup(alg);
        let uncached = verifier.for_shard().with_cache_capacity(0);
        let name = format!("{alg:?}");
        group.bench_with_input(BenchmarkId::new("uncached", &name), &token, |b, token| {
            b.iter(|| {
                uncached
                    .verify(black_box(token), Some("rider-1"), "c")
                    .expect("valid")
            })
        });
        group.bench_with_input(BenchmarkId::new("cached", &name), &token, |b, token| {
            b.iter(|| {
                verifier
                    .verify(black_box(token), Some("rider-1"), "c")
                    .expect("valid")
            })
        });
    }
    group.finish();
}

fn password(c: &mut Criterion) {
    let mut group = c.benchmark_group("password_check");
    // An uncached argon2id check takes tens of milliseconds.
    group.sample_size(10);
    let hash = hash_password("rider secret").expect("hashes");
    let file =
        PasswordFile::parse(&format!("rider-1:{hash}\n"), Path::new("bench")).expect("parses");
    let cached = PasswordChecker::new(Arc::new(file));
    let uncached = cached.for_shard().with_cache_capacity(0);
    for (name, checker) in [("uncached", &uncached), ("cached", &cached)] {
        group.bench_function(BenchmarkId::new(name, "argon2id"), |b| {
            b.iter(|| {
                checker
                    .check("rider-1", black_box(b"rider secret"))
                    .expect("right password")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, jwt, password);
criterion_main!(benches);
