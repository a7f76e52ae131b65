//! Starting, pinning and joining shards.

mod common;

use common::{join_within, Never};
use shards::{JoinError, PoolBuilder, StartError};

/// The CPU the calling thread runs on, to check pinning.
fn current_cpu() -> usize {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).expect("sched_getcpu failed")
}

#[test]
fn starts_one_shard_on_core_0() {
    let pool = PoolBuilder::new([0])
        .start(|ctx: shards::ShardContext<()>| async move {
            Ok::<_, Never>((ctx.id(), ctx.nr_shards(), ctx.cpu(), current_cpu()))
        })
        .expect("pool on core 0");
    assert_eq!(pool.nr_shards(), 1);
    let out = pool.join().unwrap();
    assert_eq!(out, vec![(0, 1, 0, 0)]);
}

#[test]
fn starts_two_shards_pinned_to_cores_0_and_1() {
    let pool = PoolBuilder::new([0, 1])
        .start(|ctx: shards::ShardContext<()>| async move {
            Ok::<_, Never>((ctx.id(), ctx.nr_shards(), ctx.cpu(), current_cpu()))
        })
        .expect("pool on cores 0 and 1");
    assert_eq!(pool.cpus(), &[0, 1]);
    let out = pool.join().unwrap();
    assert_eq!(out, vec![(0, 2, 0, 0), (1, 2, 1, 1)]);
}

#[test]
fn shard_order_follows_the_cpu_list() {
    let pool =
        PoolBuilder::new([1, 0])
            .start(|ctx: shards::ShardContext<()>| async move {
                Ok::<_, Never>((ctx.id(), current_cpu()))
            })
            .unwrap();
    assert_eq!(pool.join().unwrap(), vec![(0, 1), (1, 0)]);
}

#[test]
fn nonexistent_cpu_is_a_clear_start_error() {
    let err = PoolBuilder::new([0, 63])
        .start(|_: shards::ShardContext<()>| async { Ok::<_, Never>(()) })
        .expect_err("cpu 63 does not exist here");
    assert!(
        matches!(err, StartError::CpuNotOnline { cpu: 63, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("cpu 63 is not online"), "{msg}");
    let online = shards::CpuList(shards::online_cpus().unwrap()).to_string();
    assert!(msg.contains(&format!("online CPUs: {online}")), "{msg}");
}

#[test]
fn empty_and_duplicate_cpu_lists_are_refused() {
    let empty = PoolBuilder::new(Vec::new())
        .start(|_: shards::ShardContext<()>| async { Ok::<_, Never>(()) })
        .unwrap_err();
    assert!(matches!(empty, StartError::NoCores { .. }), "{empty}");
    let dup = PoolBuilder::new([0, 0])
        .start(|_: shards::ShardContext<()>| async { Ok::<_, Never>(()) })
        .unwrap_err();
    assert!(matches!(dup, StartError::DuplicateCpu { cpu: 0 }), "{dup}");
}

#[test]
fn a_failing_shard_is_reported_and_stops_the_others() {
    let pool = PoolBuilder::new([0, 1])
        .start(|ctx: shards::ShardContext<()>| async move {
            if ctx.id() == 1 {
                return Err(format!("shard {} gives up", ctx.id()));
            }
            // Shard 0 would run forever without the shutdown its peer's
            // failure triggers.
            ctx.shutdown().recv().await;
            Ok(())
        })
        .unwrap();
    let out = join_within(pool);
    assert!(out[0].is_ok());
    match &out[1] {
        Err(JoinError::Failed {
            shard: 1,
            cpu: 1,
            error,
        }) => assert_eq!(error, "shard 1 gives up"),
        other => panic!("expected shard 1 to fail, got {other:?}"),
    }
}

#[test]
fn a_panicking_shard_is_reported_and_stops_the_others() {
    let pool = PoolBuilder::new([0, 1])
        .start(|ctx: shards::ShardContext<()>| async move {
            if ctx.id() == 0 {
                // A panic in a spawned task, not just the root future.
                glommio::spawn_local(async { panic!("boom in a task") }).await;
            }
            ctx.shutdown().recv().await;
            Ok::<_, Never>(())
        })
        .unwrap();
    let out = join_within(pool);
    match &out[0] {
        Err(JoinError::Panicked {
            shard: 0, message, ..
        }) => {
            assert!(message.contains("boom in a task"), "{message}")
        }
        other => panic!("expected shard 0 to panic, got {other:?}"),
    }
    assert!(out[1].is_ok());
}

#[test]
fn dropping_a_pool_shuts_it_down() {
    let pool = PoolBuilder::new([0, 1])
        .start(|ctx: shards::ShardContext<()>| async move {
            ctx.shutdown().recv().await;
            Ok::<_, Never>(())
        })
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(pool);
        let _ = tx.send(());
    });
    rx.recv_timeout(common::TIMEOUT).expect("drop(pool) hung");
}
