//! The password file: parsing, argon2 and bcrypt, the cache.

use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, Params};

use crate::auth::{hash_password, AuthSetupError, Failure, PasswordChecker, PasswordFile};

/// An argon2id hash with the smallest parameters: the tests check the
/// format, not the cost (debug builds hash slowly).
pub(super) fn cheap_argon2(password: &str) -> String {
    let params = Params::new(64, 1, 1, None).unwrap();
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
    argon
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// A bcrypt hash at the lowest cost.
pub(super) fn cheap_bcrypt(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

fn parse(text: &str) -> Result<PasswordFile, AuthSetupError> {
    PasswordFile::parse(text, Path::new("passwd"))
}

fn checker(text: &str) -> PasswordChecker {
    PasswordChecker::new(Arc::new(parse(text).unwrap()))
}

#[test]
fn argon2_and_bcrypt_hashes_accept_their_password_only() {
    let file = format!(
        "# users\n\nalice:{}\r\n  bob:{}  \ncarol:{}\n",
        cheap_argon2("alice pw"),
        cheap_bcrypt("bob pw"),
        cheap_bcrypt("carol pw").replacen("$2b$", "$2y$", 1),
    );
    let c = checker(&file);
    for (user, good) in [
        ("alice", "alice pw"),
        ("bob", "bob pw"),
        ("carol", "carol pw"),
    ] {
        assert!(c.knows(user));
        assert_eq!(c.check(user, good.as_bytes()), Ok(()), "{user}");
        assert_eq!(c.check(user, b"wrong"), Err(Failure::BadPassword), "{user}");
        assert_eq!(c.check(user, b""), Err(Failure::BadPassword), "{user}");
    }
    assert!(!c.knows("dave"));
    assert_eq!(c.check("dave", b"alice pw"), Err(Failure::BadPassword));
    // Another user's password does not cross over.
    assert_eq!(c.check("bob", b"alice pw"), Err(Failure::BadPassword));
}

#[test]
fn hash_password_makes_a_default_argon2id_line() {
    let hash = hash_password("correct horse").unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
    let c = checker(&format!("alice:{hash}\n"));
    assert_eq!(c.check("alice", b"correct horse"), Ok(()));
    assert_eq!(
        c.check("alice", b"battery staple"),
        Err(Failure::BadPassword)
    );
}

#[test]
fn accepted_pairs_are_cached_per_shard_and_nothing_else() {
    let c = checker(&format!("alice:{}\n", cheap_argon2("pw")));
    assert_eq!(c.check("alice", b"pw"), Ok(()));
    assert_eq!(c.check("alice", b"pw"), Ok(()));
    assert_eq!(c.check("alice", b"pw2"), Err(Failure::BadPassword));
    assert!(format!("{c:?}").contains("cached: 1"), "{c:?}");
    let other = c.for_shard();
    assert!(format!("{other:?}").contains("cached: 0"), "{other:?}");
    assert_eq!(other.check("alice", b"pw"), Ok(()));
    let off = c.for_shard().with_cache_capacity(0);
    assert_eq!(off.check("alice", b"pw"), Ok(()));
    assert!(format!("{off:?}").contains("cached: 0"), "{off:?}");
}

#[test]
fn parse_errors_name_the_file_and_line() {
    let argon = cheap_argon2("pw");
    let cases = [
        ("alice\n".to_owned(), 1, "expected username:hash"),
        (format!("# c\n\n:{argon}\n"), 3, "the username is empty"),
        (format!("alice : {argon}\n"), 1, "spaces around the ':'"),
        (
            format!("alice:{argon}\nbob:{argon}\nalice:{argon}\n"),
            3,
            "user \"alice\" is already on line 1",
        ),
        (
            "alice:plaintext\n".to_owned(),
            1,
            "not an argon2 ($argon2id$...) or bcrypt",
        ),
        (
            "alice:$7$101$abc$def\n".to_owned(),
            1,
            "PBKDF2 hashes ($7$) are not supported",
        ),
        (
            "alice:$argon2id$$$\n".to_owned(),
            1,
            "not a valid argon2 hash",
        ),
        (
            "alice:$argon2id$v=19$m=64,t=1,p=1\n".to_owned(),
            1,
            "lacks its salt or hash",
        ),
        (
            "alice:$2b$10$tooshort\n".to_owned(),
            1,
            "not a valid bcrypt hash",
        ),
        (
            format!("alice:{}\n", cheap_bcrypt("pw").replacen("$04$", "$99$", 1)),
            1,
            "bcrypt cost 99",
        ),
        (
            format!("\n\nalice:{}\n", argon.replacen("m=64", "m=4194304", 1)),
            3,
            "m=4194304 KiB",
        ),
    ];
    for (text, line, message) in cases {
        let err = parse(&text).unwrap_err();
        assert!(
            matches!(&err, AuthSetupError::PasswordFile { line: l, .. } if *l == line),
            "{err}"
        );
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("auth.password-file passwd:{line}: ")),
            "{shown}"
        );
        assert!(shown.contains(message), "{shown}");
        assert!(!shown.contains(&argon[10..]), "no hash in errors: {shown}");
    }
}

#[test]
fn a_file_that_is_not_text_fails_at_its_line() {
    let dir = super::temp_dir();
    let path = dir.join("passwd");
    std::fs::write(&path, b"# ok\nalice:\xff\n").unwrap();
    let err = PasswordFile::load(&path).unwrap_err().to_string();
    assert!(err.contains("passwd:2: not UTF-8"), "{err}");
    let missing = PasswordFile::load(&dir.join("nope"))
        .unwrap_err()
        .to_string();
    assert!(missing.starts_with("auth.password-file \""), "{missing}");
    assert!(missing.contains("cannot read it"), "{missing}");
}

#[test]
fn debug_output_holds_no_hash() {
    let hash = cheap_argon2("pw");
    let c = checker(&format!("alice:{hash}\n"));
    let debug = format!("{c:?}");
    assert!(
        !debug.contains(&hash) && !debug.contains("alice"),
        "{debug}"
    );
}
