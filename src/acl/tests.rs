//! Table tests for the ACL file: syntax, precedence, substitutions and their
//! security rules, subscribe covers, reloads, and the sample files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytestring::ByteString;

use super::{Access, AclFile, AclRules, Authorizer, Decision};
use crate::auth::Identity;
use crate::topic::{TopicFilter, TopicName};

use Access::{Read, Write};

fn who(client_id: &str, username: Option<&str>) -> Identity {
    Identity {
        username: username.map(Box::from),
        client_id: ByteString::from(client_id.to_owned()),
        claims: None,
    }
}

fn with_claims(mut identity: Identity, claims: &[(&str, &str)]) -> Identity {
    let map: BTreeMap<String, String> = claims
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    identity.claims = Some(Arc::new(map));
    identity
}

fn rules(text: &str) -> AclRules {
    AclRules::parse(text, "test.acl").unwrap_or_else(|e| panic!("{e}"))
}

/// Checks `(identity, access, subject, allowed)` rows against `rules`.
fn check_table(rules: &AclRules, cases: &[(&Identity, Access, &str, bool)]) {
    for (who, access, subject, want) in cases {
        let got = rules.check(who, *access, subject);
        assert_eq!(
            got.allow, *want,
            "{:?}/{:?} {access:?} {subject:?}: {got:?}",
            who.client_id, who.username
        );
    }
}

#[test]
fn topic_rules_read_write_or_both() {
    let acl = rules(
        "topic read r/#\n\
         topic write w/#\n\
         topic both/+\n\
         topic readwrite rw\n",
    );
    let anyone = who("c1", None);
    check_table(
        &acl,
        &[
            (&anyone, Read, "r/x", true),
            (&anyone, Write, "r/x", false),
            (&anyone, Read, "w/x", false),
            (&anyone, Write, "w/x", true),
            (&anyone, Read, "both/x", true),
            (&anyone, Write, "both/x", true),
            (&anyone, Write, "both/x/y", false),
            (&anyone, Read, "rw", true),
            (&anyone, Write, "rw", true),
            (&anyone, Write, "other", false),
        ],
    );
}

#[test]
fn publish_matches_with_mqtt_wildcards() {
    let cases = [
        ("a/b", "a/b", true),
        ("a/b", "a/b/c", false),
        ("a/b/c", "a/b", false),
        ("a/+", "a/b", true),
        ("a/+", "a/b/c", false),
        ("a/+/c", "a//c", true),
        ("a/#", "a", true),
        ("a/#", "a/b/c", true),
        ("#", "x/y", true),
        ("+", "x", true),
        ("a//b", "a//b", true),
        ("A", "a", false),
    ];
    let anyone = who("c1", None);
    for (filter, topic, want) in cases {
        let acl = rules(&format!("topic write {filter}"));
        assert_eq!(
            acl.check(&anyone, Write, topic).allow,
            want,
            "rule {filter} publish {topic}"
        );
    }
}

#[test]
fn subscribe_needs_a_rule_that_covers_the_filter() {
    let cases = [
        ("a/+", "a/+", true),
        ("a/#", "a/+", true),
        ("a/b", "a/+", false),
        ("a/b", "a/#", false),
        ("a/+", "a/#", false),
        ("a/#", "a/#", true),
        ("a/#", "a", true),
        ("a/#", "a/+/c/#", true),
        ("a/+", "a", false),
        ("a/+", "a/b", true),
        ("a/+", "a/b/c", false),
        ("+/b", "+/b", true),
        ("+/b", "#", false),
        ("+", "#", false),
        ("#", "#", true),
        ("#", "+/+", true),
        ("a/+/c", "a/+/c", true),
        ("a/+/c", "a/+/#", false),
        ("a/b/c", "a/b/c", true),
    ];
    let anyone = who("c1", None);
    for (rule, subscription, want) in cases {
        let acl = rules(&format!("topic read {rule}"));
        assert_eq!(
            acl.check(&anyone, Read, subscription).allow,
            want,
            "rule {rule} subscribe {subscription}"
        );
    }
}

#[test]
fn dollar_topics_need_a_literal_dollar_level() {
    let cases = [
        ("topic #", Write, "$SYS/x", false),
        ("topic #", Read, "$SYS/#", false),
        ("topic #", Read, "$SYS/x", false),
        ("topic +/x", Write, "$SYS/x", false),
        ("topic +/#", Read, "$SYS/+", false),
        ("topic $SYS/#", Read, "$SYS/#", true),
        ("topic $SYS/+", Write, "$SYS/x", true),
        ("topic a/#", Write, "a/$SYS", true),
        ("topic #", Write, "x/$SYS", true),
        // A client id substituted at the start must not begin with `$`.
        ("pattern %c/#", Write, "$SYS/x", false),
        ("pattern %c/#", Read, "$SYS/#", false),
    ];
    let sys = who("$SYS", None);
    for (text, access, subject, want) in cases {
        let acl = rules(text);
        assert_eq!(
            acl.check(&sys, access, subject).allow,
            want,
            "{text} {access:?} {subject}"
        );
    }
    // Control: the same pattern does grant a plain client id.
    assert!(
        rules("pattern %c/#")
            .check(&who("abc", None), Write, "abc/x")
            .allow
    );
}

#[test]
fn user_topic_rules_apply_to_that_user_only() {
    let acl = rules(
        "topic shared/#\n\
         user alice\n\
         topic alice/#\n\
         pattern read p/%u\n\
         user bob smith\n\
         topic bob/#\n\
         user odd %(\n\
         topic odd/#\n",
    );
    let alice = who("c1", Some("alice"));
    let bob = who("c2", Some("bob smith"));
    let nobody = who("alice", None);
    check_table(
        &acl,
        &[
            (&alice, Write, "shared/x", true),
            (&bob, Read, "shared/x", true),
            (&nobody, Read, "shared/x", true),
            (&alice, Write, "alice/x", true),
            (&alice, Read, "alice/#", true),
            (&bob, Write, "alice/x", false),
            (&nobody, Write, "alice/x", false),
            (&bob, Write, "bob/x", true),
            (&alice, Write, "bob/x", false),
            (&who("c3", Some("odd %(")), Write, "odd/x", true),
            // A pattern after a user line still applies to everyone.
            (&alice, Read, "p/alice", true),
            (&bob, Read, "p/bob smith", true),
            (&bob, Read, "p/alice", false),
            (&nobody, Read, "p/alice", false),
        ],
    );
}

#[test]
fn pattern_substitutions() {
    let acl = rules(
        "pattern a/%c/%u\n\
         pattern m/%m/x\n\
         pattern read dev-%c/state\n\
         pattern read pair/%c-%u\n",
    );
    let dev = who("d1", Some("ann"));
    let no_user = who("d1", None);
    let empty_user = who("d1", Some(""));
    check_table(
        &acl,
        &[
            (&dev, Write, "a/d1/ann", true),
            (&dev, Read, "a/d1/ann", true),
            (&dev, Write, "a/d2/ann", false),
            (&dev, Write, "a/d1/bob", false),
            (&no_user, Write, "a/d1/ann", false),
            (&empty_user, Write, "a/d1/", false),
            // %m is the empty mountpoint.
            (&dev, Write, "m//x", true),
            (&dev, Write, "m/x", false),
            (&dev, Read, "dev-d1/state", true),
            (&dev, Read, "dev-d2/state", false),
            (&dev, Read, "d1/state", false),
            (&dev, Read, "pair/d1-ann", true),
            (&dev, Read, "pair/d1-", false),
            (&no_user, Read, "pair/d1-", false),
        ],
    );
}

#[test]
fn token_fields_with_each_delimiter() {
    let acl = rules(
        "token read colon/%(c, :, 3)\n\
         token read dash/%(c,-,2)\n\
         token read pipe/%( c , | , 1 )\n\
         token read user/%(u, :, 2)/#\n\
         token write out/%(c, :, 1)/%(c, :, 2)\n",
    );
    let courier = who("device-1:owner-7:profile-42", Some("fleet:north"));
    let piped = who("a|b|c", None);
    check_table(
        &acl,
        &[
            (&courier, Read, "colon/profile-42", true),
            (&courier, Read, "colon/owner-7", false),
            (&courier, Write, "colon/profile-42", false),
            // Split on '-': device, 1:owner, 7:profile, 42.
            (&courier, Read, "dash/1:owner", true),
            (&courier, Read, "dash/device", false),
            (&piped, Read, "pipe/a", true),
            (&piped, Read, "pipe/b", false),
            (&courier, Read, "pipe/device-1:owner-7:profile-42", true),
            (&courier, Read, "user/north/x", true),
            (&courier, Read, "user/fleet/x", false),
            (&piped, Read, "user/north/x", false),
            (&courier, Write, "out/device-1/owner-7", true),
            (&courier, Write, "out/device-1/profile-42", false),
        ],
    );
}

#[test]
fn missing_or_empty_token_field_denies() {
    let acl = rules(
        "token read third/%(c, :, 3)\n\
         token read second/%(u, -, 2)/#\n",
    );
    let two_fields = who("a:b", Some("x"));
    let empty_third = who("a:b:", Some("x-"));
    let empty_second = who("a::c", Some("x--y"));
    let full = who("a:b:c", Some("x-y"));
    check_table(
        &acl,
        &[
            (&full, Read, "third/c", true),
            (&full, Read, "second/y/z", true),
            (&two_fields, Read, "third/", false),
            (&two_fields, Read, "third/+", false),
            (&two_fields, Read, "second/#", false),
            (&empty_third, Read, "third/", false),
            (&empty_third, Read, "second/", false),
            (&empty_third, Read, "second//x", false),
            (&empty_second, Read, "second//y", false),
        ],
    );
}

#[test]
fn jwt_claims_substitute() {
    let acl = rules("token read tenants/%(j, tenant)/#\ntoken write by-sub/%(j,sub)");
    let acme = with_claims(who("c1", None), &[("tenant", "acme"), ("sub", "u-1")]);
    let empty = with_claims(who("c2", None), &[("tenant", "")]);
    let slash = with_claims(who("c3", None), &[("tenant", "acme/x")]);
    let plus = with_claims(who("c4", None), &[("tenant", "+")]);
    let no_token = who("c5", None);
    check_table(
        &acl,
        &[
            (&acme, Read, "tenants/acme/x", true),
            (&acme, Read, "tenants/acme/#", true),
            (&acme, Read, "tenants/other/x", false),
            (&acme, Write, "by-sub/u-1", true),
            (&acme, Write, "by-sub/u-2", false),
            (&empty, Read, "tenants//x", false),
            (&slash, Read, "tenants/acme/x/y", false),
            (&slash, Read, "tenants/acme/#", false),
            (&plus, Read, "tenants/+/#", false),
            (&plus, Read, "tenants/x/y", false),
            (&no_token, Read, "tenants/acme/x", false),
            (&no_token, Write, "by-sub/", false),
        ],
    );
}

/// Client ids and usernames holding `+`, `#` or `/` must never widen a grant.
#[test]
fn wildcards_in_identities_never_widen_a_grant() {
    let acl = rules(
        "pattern %c/#\n\
         pattern read inbox/%c\n\
         pattern read box/%u/in\n\
         token read tok/%(c, :, 2)\n\
         token read utok/%(u, :, 2)/x\n",
    );
    // Control: a plain identity gets exactly its own topics.
    let plain = who("dev1", Some("ann"));
    check_table(
        &acl,
        &[
            (&plain, Write, "dev1/x", true),
            (&plain, Read, "inbox/dev1", true),
            (&plain, Read, "box/ann/in", true),
            (&plain, Read, "inbox/+", false),
        ],
    );
    let attackers = [
        who("+", Some("+")),
        who("#", Some("#")),
        who("a/b", Some("a/b")),
        who("x:+:y", Some("x:+:y")),
        who("x:#", Some("x:#")),
        who("x:a/b", Some("x:a/b")),
        who("inbox/+", Some("box/#")),
    ];
    let subjects = [
        (Write, "x/y"),
        (Write, "a/b/x"),
        (Write, "+/y"),
        (Write, "#/y"),
        (Read, "#"),
        (Read, "+/#"),
        (Read, "inbox/+"),
        (Read, "inbox/#"),
        (Read, "inbox/a/b"),
        (Read, "inbox/x"),
        (Read, "box/+/in"),
        (Read, "box/#"),
        (Read, "box/a/b/in"),
        (Read, "box/x/in"),
        (Read, "tok/+"),
        (Read, "tok/#"),
        (Read, "tok/a/b"),
        (Read, "tok/x"),
        (Read, "utok/+/x"),
        (Read, "utok/a/b/x"),
    ];
    for attacker in &attackers {
        for (access, subject) in subjects {
            let got = acl.check(attacker, access, subject);
            assert!(
                !got.allow,
                "{:?}/{:?} {access:?} {subject}: {got:?}",
                attacker.client_id, attacker.username
            );
        }
    }
}

/// A substituted level is literal: it never covers a wildcard subscription.
#[test]
fn substituted_level_covers_only_its_literal() {
    let acl = rules("pattern read inbox/%c\ntoken read t/%(c, :, 1)/in");
    let dev = who("dev1:x", None);
    check_table(
        &acl,
        &[
            (&dev, Read, "inbox/dev1:x", true),
            (&dev, Read, "inbox/+", false),
            (&dev, Read, "inbox/#", false),
            (&dev, Read, "t/dev1/in", true),
            (&dev, Read, "t/+/in", false),
            (&dev, Read, "t/#", false),
        ],
    );
}

fn decision(allow: bool, label: Option<&str>, pattern: Option<&str>) -> Decision {
    Decision {
        allow,
        label: label.map(Arc::from),
        pattern: pattern.map(Arc::from),
    }
}

#[test]
fn first_match_decides_in_precedence_order() {
    let acl = rules(
        "deny topic secret/# label global_deny\n\
         topic read news/# label news\n\
         deny topic +/hidden label wild_first\n\
         topic a/hidden label never\n\
         user alice\n\
         topic secret/alice label never\n\
         deny topic news/sports label never\n\
         topic write news/alice label alice_news\n\
         deny topic priv/# label alice_deny\n\
         deny pattern write dev/%c/cfg label cfg\n\
         pattern dev/%c/# label dev\n\
         pattern priv/%u label pattern_priv\n\
         token read order/%(c, :, 1) label token_first\n\
         deny pattern read order/%c label pattern_second\n\
         deny pattern read order2/%c label pattern_first\n\
         token read order2/%(c, :, 1) label token_second\n",
    );
    let alice = who("a1", Some("alice"));
    let bob = who("b1", Some("bob"));
    let cases = [
        // Everyone's topic rules come before alice's own.
        (
            &alice,
            Read,
            "secret/alice",
            decision(false, Some("global_deny"), Some("secret/#")),
        ),
        (
            &alice,
            Read,
            "news/sports",
            decision(true, Some("news"), Some("news/#")),
        ),
        // A read-only rule does not decide a publish.
        (
            &alice,
            Write,
            "news/alice",
            decision(true, Some("alice_news"), Some("news/alice")),
        ),
        (&bob, Write, "news/alice", decision(false, None, None)),
        // Within a group, file order across indexed and wildcard rules.
        (
            &bob,
            Write,
            "a/hidden",
            decision(false, Some("wild_first"), Some("+/hidden")),
        ),
        // A user's topic rules come before patterns.
        (
            &alice,
            Write,
            "priv/alice",
            decision(false, Some("alice_deny"), Some("priv/#")),
        ),
        (
            &bob,
            Write,
            "priv/bob",
            decision(true, Some("pattern_priv"), Some("priv/%u")),
        ),
        // A deny pattern before a broader grant.
        (
            &bob,
            Write,
            "dev/b1/cfg",
            decision(false, Some("cfg"), Some("dev/%c/cfg")),
        ),
        (
            &bob,
            Read,
            "dev/b1/cfg",
            decision(true, Some("dev"), Some("dev/%c/#")),
        ),
        (
            &bob,
            Write,
            "dev/b1/x",
            decision(true, Some("dev"), Some("dev/%c/#")),
        ),
        // Pattern and token rules share one group, in file order.
        (
            &bob,
            Read,
            "order/b1",
            decision(true, Some("token_first"), Some("order/%(c, :, 1)")),
        ),
        (
            &bob,
            Read,
            "order2/b1",
            decision(false, Some("pattern_first"), Some("order2/%c")),
        ),
        // No match denies, with no label.
        (&bob, Read, "unknown", decision(false, None, None)),
    ];
    for (who, access, subject, want) in cases {
        assert_eq!(
            acl.check(who, access, subject),
            want,
            "{access:?} {subject}"
        );
    }
}

#[test]
fn decision_carries_label_and_pattern_as_written() {
    let acl = rules(
        "token write courier/%( c , : , 3 )/out label courier_out\n\
         topic read plain/#\n",
    );
    let courier = who("d:o:p42", None);
    assert_eq!(
        acl.check(&courier, Write, "courier/p42/out"),
        decision(
            true,
            Some("courier_out"),
            Some("courier/%( c , : , 3 )/out")
        )
    );
    assert_eq!(
        acl.check(&courier, Read, "plain/x"),
        decision(true, None, Some("plain/#"))
    );
}

#[test]
fn parse_errors_name_the_line_and_the_fix() {
    let cases = [
        (
            "topic a\nfoo bar\n",
            "test.acl:2: unknown keyword \"foo\"; a line starts with topic, user, pattern, token or deny",
        ),
        (
            "Topic a",
            "test.acl:1: unknown keyword \"Topic\"; a line starts with topic, user, pattern, token or deny",
        ),
        (
            "\n# comment\r\n  \ntopic a/#/b\n",
            "test.acl:4: \"#\" must be the last level of a filter: \"a/#/b\"",
        ),
        (
            "topic read a+/b",
            "test.acl:1: \"+\" and \"#\" must each be a whole level of a filter: \"a+/b\"",
        ),
        (
            "pattern read a/%c#",
            "test.acl:1: \"+\" and \"#\" must each be a whole level of a filter: \"a/%c#\"",
        ),
        (
            "topic a\r\ntoken read x/%(x, :, 2)",
            "test.acl:2: unknown token field \"x\" in %(x, :, 2); use c, u or j",
        ),
        (
            "token read x/%(c, ;, 2)",
            "test.acl:1: bad delimiter \";\" in %(c, ;, 2); use :, - or |",
        ),
        (
            "token read x/%(c, :, 0)",
            "test.acl:1: bad field number \"0\" in %(c, :, 0); fields count from 1",
        ),
        (
            "token read x/%(u, :, two)",
            "test.acl:1: bad field number \"two\" in %(u, :, two); fields count from 1",
        ),
        (
            "token read x/%(c, :)",
            "test.acl:1: %(c, :) needs three parts: %(c, <delimiter>, <field number>), e.g. %(c, :, 3)",
        ),
        (
            "token read x/%(c, :, 2 label l",
            "test.acl:1: unclosed \"%(\" in \"x/%(c, :, 2 label l\"; a token field looks like %(c, :, 3)",
        ),
        (
            "token read x/%(j, )",
            "test.acl:1: %(j, ) needs a claim name: %(j, <claim>), e.g. %(j, sub)",
        ),
        (
            "pattern read x/%(c, :, 1)",
            "test.acl:1: %(...) fields need a token rule, not pattern: token [read|write] x/%(c, :, 1)",
        ),
        (
            "pattern read x/%x",
            "test.acl:1: unknown substitution \"%x\" in \"x/%x\"; use %c, %u, %m",
        ),
        (
            "token read x/%",
            "test.acl:1: unknown substitution \"%\" in \"x/%\"; use %c, %u, %m, %(c, :, N), %(u, :, N) or %(j, claim)",
        ),
        (
            "topic read",
            "test.acl:1: missing filter: topic [read|write] <filter> [label <name>]",
        ),
        (
            "pattern write label x",
            "test.acl:1: missing filter: pattern [read|write] <filter> [label <name>]",
        ),
        (
            "topic a\ntopic b label",
            "test.acl:2: label needs a name: topic [read|write] <filter> [label <name>]",
        ),
        (
            "topic a label x y",
            "test.acl:1: unexpected \"y\" after the filter \"a\"; expected topic [read|write] <filter> [label <name>]",
        ),
        (
            "topic a/b # mine",
            "test.acl:1: unexpected \"#\" after the filter \"a/b\"; expected topic [read|write] <filter> [label <name>] (a comment must be on a line of its own)",
        ),
        (
            "topic deny a",
            "test.acl:1: unexpected \"a\" after the filter \"deny\"; expected topic [read|write] <filter> [label <name>] (deny goes first: deny topic <filter>)",
        ),
        ("topic a\nuser  ", "test.acl:2: user needs a name: user <name>"),
        (
            "deny user bob",
            "test.acl:1: deny applies to topic, pattern and token rules, not to user",
        ),
        (
            "deny",
            "test.acl:1: deny needs a rule: deny topic|pattern|token [read|write] <filter>",
        ),
        (
            "deny foo a",
            "test.acl:1: unknown keyword \"foo\" after deny; use deny topic, deny pattern or deny token",
        ),
    ];
    for (text, want) in cases {
        match AclRules::parse(text, "test.acl") {
            Ok(parsed) => panic!("{text:?} parsed: {parsed:?}"),
            Err(e) => assert_eq!(e.to_string(), want, "{text:?}"),
        }
    }
}

#[test]
fn comments_blank_lines_and_spacing_are_ignored() {
    let acl = rules(
        "\u{feff}# leading comment\n\
         \n\
         \t  # indented comment\n\
         \ttopic   read\ta/#   label   x  \r\n\
         topic %c/literal\n",
    );
    assert_eq!(acl.len(), 2);
    let anyone = who("c1", None);
    assert_eq!(
        acl.check(&anyone, Read, "a/b"),
        decision(true, Some("x"), Some("a/#"))
    );
    // `topic` rules take `%c` literally, as VerneMQ does.
    assert!(acl.check(&anyone, Write, "%c/literal").allow);
    assert!(!acl.check(&anyone, Write, "c1/literal").allow);
    assert!(rules("# only comments\n\n").is_empty());
}

#[test]
fn load_names_the_path() {
    let path = temp_path("missing");
    let err = AclRules::load(&path).unwrap_err().to_string();
    let want = format!("{}: cannot read the ACL file: ", path.display());
    assert!(err.starts_with(&want), "{err}");
    let err = AclFile::load(&path).unwrap_err().to_string();
    assert!(err.starts_with(&want), "{err}");
}

/// A file under the temp dir with a unique name, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let file = TempFile(temp_path(name));
        file.write(text);
        file
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("shardmq-acl-{}-{n}-{name}.acl", std::process::id()))
}

#[test]
fn reload_keeps_old_rules_on_a_bad_file_and_swaps_on_a_good_one() {
    let file = TempFile::new("reload", "topic read old/# label old\n");
    let acl = AclFile::load(&file.0).unwrap();
    let shard = acl.clone();
    let anyone = who("c1", None);
    let old = TopicFilter::new("old/x").unwrap();
    let new = TopicFilter::new("new/x").unwrap();
    assert_eq!(acl.generation(), 0);
    assert!(shard.subscribe(&anyone, &old).allow);
    assert!(!shard.subscribe(&anyone, &new).allow);

    // Unchanged content: nothing swapped.
    assert!(!acl.reload().unwrap());
    assert_eq!(acl.generation(), 0);

    file.write("topic read new/# label new\ntopic read a/#/b\n");
    let err = acl.reload().unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}:2: \"#\" must be the last level of a filter: \"a/#/b\"",
            file.0.display()
        )
    );
    assert_eq!(acl.generation(), 0);
    assert!(shard.subscribe(&anyone, &old).allow, "old rules stay");
    assert!(!shard.subscribe(&anyone, &new).allow);

    file.write("topic read new/# label new\n");
    assert!(acl.reload().unwrap());
    assert_eq!(shard.generation(), 1);
    assert!(!shard.subscribe(&anyone, &old).allow);
    assert_eq!(
        shard.subscribe(&anyone, &new),
        decision(true, Some("new"), Some("new/#"))
    );
    assert!(!acl.reload().unwrap());
    assert_eq!(shard.generation(), 1);

    // The interval check: a changed length is noticed, an unchanged file is not.
    assert!(!acl.reload_if_modified().unwrap());
    file.write("topic read newer/# label newer\n");
    assert!(acl.reload_if_modified().unwrap());
    assert_eq!(shard.generation(), 2);
    assert!(!acl.reload_if_modified().unwrap());
    assert_eq!(acl.rules().len(), 1);

    // A file that vanished is an error naming it; the rules stay.
    std::fs::remove_file(&file.0).unwrap();
    let err = acl.reload().unwrap_err().to_string();
    assert!(err.starts_with(&file.0.display().to_string()), "{err}");
    assert!(
        shard
            .subscribe(&anyone, &TopicFilter::new("newer/x").unwrap())
            .allow
    );
}

#[test]
fn authorizer_checks_topic_names_and_filters_without_share_prefix() {
    let file = TempFile::new("authorizer", "topic read feed/+\ntopic write up/#\n");
    let acl = AclFile::load(&file.0).unwrap();
    let anyone = who("c1", None);
    let sub = |f: &str| acl.subscribe(&anyone, &TopicFilter::new(f.to_owned()).unwrap());
    let publish = |t: &str| acl.publish(&anyone, &TopicName::new(t.to_owned()).unwrap());
    assert!(sub("feed/a").allow);
    assert!(sub("$share/group/feed/+").allow);
    assert!(!sub("$share/group/feed/#").allow);
    assert!(!sub("up/a").allow);
    assert!(publish("up/a/b").allow);
    assert!(!publish("feed/a").allow);
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

#[test]
fn sample_acl_files_parse() {
    let mut parsed = 0;
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "acl") {
            let rules = AclRules::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!rules.is_empty(), "{}", path.display());
            parsed += 1;
        }
    }
    assert!(parsed >= 1, "no configs/*.acl found");
}

/// configs/example.acl does what its comments say.
#[test]
fn example_acl_decides_as_documented() {
    let acl = AclRules::load(&configs_dir().join("example.acl")).unwrap();
    let courier = who("device-1:owner-7:profile-42", Some("north-fleet"));
    let ops = who("console-1", Some("ops-console"));
    let billing = who("b-1", Some("billing"));
    let tenant = with_claims(who("t-1", None), &[("tenant", "acme")]);
    let label = |who: &Identity, access, subject| {
        let d = acl.check(who, access, subject);
        (d.allow, d.label.as_deref().map(str::to_owned))
    };
    let cases: &[(&Identity, Access, &str, bool, Option<&str>)] = &[
        (&ops, Write, "$SYS/x", false, Some("sys_readonly")),
        (&courier, Read, "broadcast/all", true, Some("broadcast")),
        (&courier, Write, "broadcast/all", false, None),
        (&ops, Read, "anything/at/all", true, Some("ops_read")),
        (&ops, Read, "$SYS/#", true, Some("ops_sys")),
        (&ops, Write, "broadcast/all", true, Some("ops_broadcast")),
        (&courier, Read, "$SYS/#", false, None),
        (
            &billing,
            Write,
            "billing/acme/invoices",
            true,
            Some("billing"),
        ),
        (&courier, Write, "billing/acme/invoices", false, None),
        (
            &courier,
            Write,
            "telemetry/north-fleet/device-1:owner-7:profile-42",
            true,
            Some("telemetry"),
        ),
        (
            &courier,
            Read,
            "inbox/device-1:owner-7:profile-42/x",
            true,
            Some("inbox"),
        ),
        (
            &courier,
            Read,
            "status/dev-device-1:owner-7:profile-42",
            true,
            Some("device_status"),
        ),
        (
            &courier,
            Write,
            "devices/device-1:owner-7:profile-42/config",
            false,
            Some("config_readonly"),
        ),
        (
            &courier,
            Read,
            "devices/device-1:owner-7:profile-42/config",
            true,
            Some("device"),
        ),
        (
            &courier,
            Read,
            "courier/profile-42/in",
            true,
            Some("courier_in"),
        ),
        (
            &courier,
            Write,
            "courier/profile-42/out",
            true,
            Some("courier_out"),
        ),
        (&courier, Read, "courier/profile-43/in", false, None),
        (&courier, Read, "fleet/north/#", true, Some("fleet")),
        (&tenant, Read, "tenants/acme/x", true, Some("tenant")),
        (&courier, Read, "tenants/acme/x", false, None),
    ];
    for (who, access, subject, allow, want_label) in cases {
        assert_eq!(
            label(who, *access, subject),
            (*allow, want_label.map(str::to_owned)),
            "{:?} {access:?} {subject}",
            who.username
        );
    }
}

/// Model test: for plain `topic` rules, a publish decision equals the naive
/// matcher, and a subscribe cover never grants a filter that can receive a
/// topic the rule does not match. Every filter of up to three levels over
/// a small alphabet, against every topic of up to four levels.
#[test]
fn model_plain_rules_agree_with_the_naive_matcher() {
    let alphabet = ["a", "b", "+", "#", "$s"];
    let mut filters: Vec<String> = Vec::new();
    let mut frontier: Vec<String> = vec![String::new()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for prefix in &frontier {
            for level in alphabet {
                let f = if prefix.is_empty() {
                    level.to_owned()
                } else {
                    format!("{prefix}/{level}")
                };
                filters.push(f.clone());
                if level != "#" {
                    next.push(f);
                }
            }
        }
        frontier = next;
    }
    let mut topics: Vec<String> = Vec::new();
    let mut frontier: Vec<String> = vec![String::new()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for prefix in &frontier {
            for level in ["a", "c", "$s"] {
                let t = if prefix.is_empty() {
                    level.to_owned()
                } else {
                    format!("{prefix}/{level}")
                };
                topics.push(t.clone());
                next.push(t);
            }
        }
        frontier = next;
    }
    let anyone = who("c1", None);
    let mut covered = 0;
    for rule in &filters {
        let acl = rules(&format!("topic {rule}"));
        for topic in &topics {
            assert_eq!(
                acl.check(&anyone, Write, topic).allow,
                crate::topic::matches(rule, topic),
                "rule {rule} publish {topic}"
            );
        }
        for sub in &filters {
            if acl.check(&anyone, Read, sub).allow {
                covered += 1;
                for topic in &topics {
                    assert!(
                        !crate::topic::matches(sub, topic) || crate::topic::matches(rule, topic),
                        "rule {rule} covers {sub}, which receives {topic}"
                    );
                }
            }
        }
    }
    assert!(covered > filters.len(), "covered only {covered}");
}
