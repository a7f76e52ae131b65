use std::time::Instant;

use super::*;

fn life(node: &str, boot: u64) -> Owner {
    Owner {
        node: node.into(),
        boot,
    }
}

fn effects(r: &mut Reaper) -> Vec<ReapEffect> {
    std::iter::from_fn(|| r.poll_effect()).collect()
}

#[test]
fn a_reap_removes_routes_adopts_what_is_still_the_dead_lifes_and_publishes_its_wills() {
    let (me, dead) = (life("a", 1), life("b", 2));
    let mut r = Reaper::new(me.clone());
    r.handle_died(dead.clone());
    r.handle_died(dead.clone());
    r.handle_died(me);
    assert_eq!(
        effects(&mut r),
        [ReapEffect::RemoveRoutes { dead: dead.clone() }]
    );
    r.handle_done();
    assert_eq!(effects(&mut r), [ReapEffect::List { dead: dead.clone() }]);
    r.handle_listed(vec!["x".into(), "y".into()]);
    let adopt = |c: &str| ReapEffect::Adopt {
        client_id: c.into(),
        dead: dead.clone(),
    };
    assert_eq!(effects(&mut r), [adopt("x")]);
    // Redis down: the same operation again, after RETRY.
    let now = Instant::now();
    r.handle_failed(now);
    r.handle_timeout(now);
    assert_eq!(effects(&mut r), []);
    r.handle_timeout(now + RETRY);
    assert_eq!(effects(&mut r), [adopt("x")]);
    r.handle_adopted(Adoption::Adopted {
        generation: 7,
        persistent: true,
        will: Some(Bytes::from_static(b"will")),
    });
    assert_eq!(
        effects(&mut r),
        [
            ReapEffect::Adopted {
                client_id: "x".into(),
                generation: 7,
                dead: dead.clone(),
                persistent: true
            },
            ReapEffect::PublishWill {
                client_id: "x".into(),
                will: Bytes::from_static(b"will")
            },
            adopt("y"),
        ]
    );
    // Another survivor, or a client's claim, got there first.
    r.handle_adopted(Adoption::NotTheirs);
    assert_eq!(effects(&mut r), [ReapEffect::Reaped { dead }]);
    assert!(r.is_idle());
    assert_eq!(r.adopted(), 1);
}
