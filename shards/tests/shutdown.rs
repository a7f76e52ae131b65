//! One shutdown signal, from any thread, reaching every shard and task.

mod common;

use common::{join_within, Never};
use futures_lite::future;
use shards::{PoolBuilder, ShardContext, Shutdown, ShutdownHandle, TaskTracker};

#[test]
fn a_trigger_from_another_thread_reaches_every_shard() {
    let pool = PoolBuilder::new([0, 1])
        .start(|ctx: ShardContext<()>| async move {
            ctx.shutdown().recv().await;
            Ok::<_, Never>(ctx.id())
        })
        .unwrap();
    let handle = pool.shutdown_handle();
    std::thread::spawn(move || handle.trigger()).join().unwrap();
    let ids: Vec<usize> = join_within(pool).into_iter().map(Result::unwrap).collect();
    assert_eq!(ids, vec![0, 1]);
}

#[test]
fn a_handle_made_before_the_pool_works_even_if_triggered_early() {
    let handle = ShutdownHandle::new();
    handle.trigger();
    let pool = PoolBuilder::new([0, 1])
        .shutdown_handle(handle.clone())
        .start(|ctx: ShardContext<()>| async move {
            ctx.shutdown().recv().await;
            Ok::<_, Never>(ctx.shutdown().is_shutdown())
        })
        .unwrap();
    let seen: Vec<bool> = join_within(pool).into_iter().map(Result::unwrap).collect();
    assert_eq!(seen, vec![true, true]);
    assert!(handle.is_triggered());
}

#[test]
fn a_shard_waits_for_its_tasks_to_finish() {
    let pool = PoolBuilder::new([0, 1])
        .start(|ctx: ShardContext<()>| async move {
            let tracker = TaskTracker::new();
            let done = std::rc::Rc::new(std::cell::Cell::new(0));
            for _ in 0..10 {
                let token = tracker.token();
                let shutdown = ctx.shutdown().clone();
                let done = done.clone();
                glommio::spawn_local(async move {
                    shutdown.recv().await;
                    // "Flush" after the signal, then exit.
                    future::yield_now().await;
                    done.set(done.get() + 1);
                    drop(token);
                })
                .detach();
            }
            assert_eq!(tracker.live(), 10);
            ctx.shutdown().recv().await;
            tracker.wait_idle().await;
            Ok::<_, Never>(done.get())
        })
        .unwrap();
    pool.shutdown_handle().trigger();
    let done: Vec<usize> = join_within(pool).into_iter().map(Result::unwrap).collect();
    assert_eq!(done, vec![10, 10]);
}

/// `Shutdown::recv` raced 40k times in a loop must not leave a glommio
/// waker behind each time (the i16 waker count would overflow).
#[test]
fn racing_shutdown_recv_in_a_loop_does_not_overflow_wakers() {
    shards::test_executor(|| async {
        let shutdown = Shutdown::new();
        for _ in 0..40_000 {
            future::or(shutdown.recv(), future::yield_now()).await;
        }
        assert!(!shutdown.is_shutdown());
        shutdown.trigger();
        shutdown.recv().await;
    });
}
