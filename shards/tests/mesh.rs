//! Cross-shard batches over the mesh.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{join_within, Never};
use futures_lite::future;
use shards::{Batch, MeshError, PoolBuilder, ShardContext};

/// Each shard sends `N` numbered messages to every other shard, flushing
/// every `EVERY` pushes; each shard checks what it got.
#[test]
fn batches_arrive_in_order_per_peer() {
    const N: u32 = 5_000;
    const EVERY: u32 = 100;
    let pool = PoolBuilder::new([0, 1])
        .start(|mut ctx: ShardContext<(usize, u32)>| async move {
            let me = ctx.id();
            let peer = 1 - me;
            let mut inbox = ctx.take_inbox().expect("inbox");
            let mut outbox = ctx.outbox();
            let sender = glommio::spawn_local(async move {
                for i in 0..N {
                    outbox.push(peer, (me, i)).unwrap();
                    if (i + 1) % EVERY == 0 {
                        outbox.flush().await.unwrap();
                    }
                }
                outbox.flush().await.unwrap();
                assert_eq!(outbox.buffered(), 0);
            });
            let mut got = Vec::new();
            let mut batches = 0;
            while got.len() < N as usize {
                let Batch { from, messages } = inbox.recv().await.expect("peer still running");
                assert_eq!(from, peer);
                assert!(messages.len() <= EVERY as usize);
                batches += 1;
                got.extend(messages);
            }
            sender.await;
            let expected: Vec<_> = (0..N).map(|i| (peer, i)).collect();
            assert_eq!(got, expected, "messages out of order or lost");
            Ok::<_, Never>(batches)
        })
        .unwrap();
    let batches: Vec<usize> = join_within(pool).into_iter().map(Result::unwrap).collect();
    for b in batches {
        assert_eq!(b, (N / EVERY) as usize, "one channel send per flush");
    }
}

#[test]
fn send_flushes_at_max_batch() {
    let pool = PoolBuilder::new([0, 1])
        .max_batch(10)
        .start(|mut ctx: ShardContext<u32>| async move {
            if ctx.id() == 0 {
                let mut outbox = ctx.outbox();
                for i in 0..25 {
                    outbox.send(1, i).await.unwrap();
                }
                // Two full batches went out; five wait for a flush.
                assert_eq!(outbox.buffered(), 5);
                outbox.flush().await.unwrap();
                return Ok::<_, Never>(vec![]);
            }
            let mut inbox = ctx.take_inbox().unwrap();
            let mut sizes = vec![];
            while sizes.iter().sum::<usize>() < 25 {
                sizes.push(inbox.recv().await.unwrap().messages.len());
            }
            Ok(sizes)
        })
        .unwrap();
    let out: Vec<_> = join_within(pool).into_iter().map(Result::unwrap).collect();
    assert_eq!(out[1], vec![10, 10, 5]);
}

#[test]
fn sending_to_self_or_nowhere_is_refused() {
    let pool = PoolBuilder::new([0, 1])
        .start(|ctx: ShardContext<u8>| async move {
            let mut outbox = ctx.outbox();
            let me = ctx.id();
            assert_eq!(outbox.push(me, 1), Err(MeshError::ToSelf { shard: me }));
            assert_eq!(
                outbox.push(2, 1),
                Err(MeshError::NoSuchShard {
                    shard: 2,
                    nr_shards: 2
                })
            );
            assert_eq!(outbox.buffered(), 0);
            Ok::<_, Never>(())
        })
        .unwrap();
    for r in join_within(pool) {
        r.unwrap();
    }
}

#[test]
fn push_all_reaches_every_other_shard() {
    let pool = PoolBuilder::new([0, 1])
        .start(|mut ctx: ShardContext<usize>| async move {
            let mut outbox = ctx.outbox();
            outbox.push_all(ctx.id()).unwrap();
            outbox.flush().await.unwrap();
            let batch = ctx.take_inbox().unwrap().recv().await.unwrap();
            Ok::<_, Never>(batch)
        })
        .unwrap();
    let out: Vec<_> = join_within(pool).into_iter().map(Result::unwrap).collect();
    assert_eq!(
        out[0],
        Batch {
            from: 1,
            messages: vec![1]
        }
    );
    assert_eq!(
        out[1],
        Batch {
            from: 0,
            messages: vec![0]
        }
    );
}

#[test]
fn a_one_shard_inbox_is_empty_and_ends() {
    let pool = PoolBuilder::new([0])
        .start(|mut ctx: ShardContext<u8>| async move {
            Ok::<_, Never>(ctx.take_inbox().unwrap().recv().await.is_none())
        })
        .unwrap();
    assert_eq!(pool.join().unwrap(), vec![true]);
}

/// A full channel makes the sender wait (try_flush reports it) and nothing
/// is lost once the receiver drains.
#[test]
fn full_channels_push_back_without_losing_messages() {
    const CAPACITY: usize = 2;
    // Set by shard 0 once it has seen the channel full; shard 1 does not
    // read before, so the test does not depend on timing.
    let saw_full = Arc::new(AtomicBool::new(false));
    let pool = PoolBuilder::new([0, 1])
        .mesh_capacity(CAPACITY)
        .start(move |mut ctx: ShardContext<u32>| async move {
            let mut inbox = ctx.take_inbox().unwrap();
            if ctx.id() == 0 {
                let mut outbox = ctx.outbox();
                let mut sent = 0;
                let mut full = false;
                // Shard 1 is not reading yet, so the channel fills after
                // CAPACITY batches.
                for _ in 0..CAPACITY + 2 {
                    outbox.push(1, sent).unwrap();
                    sent += 1;
                    if !outbox.try_flush().unwrap() {
                        full = true;
                        break;
                    }
                }
                assert!(full, "the channel never filled");
                saw_full.store(true, Ordering::SeqCst);
                for _ in 0..50 {
                    outbox.push(1, sent).unwrap();
                    sent += 1;
                    outbox.flush().await.unwrap();
                }
                // Tell shard 1 we are done so it can stop.
                assert!(inbox.recv().await.is_some());
                return Ok::<_, Never>(sent);
            }
            for _ in 0..20_000 {
                if saw_full.load(Ordering::SeqCst) {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            let mut got = vec![];
            while got.len() < 50 + CAPACITY + 1 {
                got.extend(inbox.recv().await.unwrap().messages);
            }
            let expected: Vec<u32> = (0..got.len() as u32).collect();
            assert_eq!(got, expected);
            let mut outbox = ctx.outbox();
            outbox.push(0, 0).unwrap();
            outbox.flush().await.unwrap();
            Ok(got.len() as u32)
        })
        .unwrap();
    let out: Vec<_> = join_within(pool).into_iter().map(Result::unwrap).collect();
    assert_eq!(out[0], out[1]);
}

/// Regression for glommio's i16 waker count: polling a pending channel
/// receive 40k times (racing it against a ready future) must not pile up
/// wakers. Unguarded, glommio panics with "Waker invariant broken".
#[test]
fn racing_inbox_recv_in_a_loop_does_not_overflow_wakers() {
    let pool = PoolBuilder::new([0, 1])
        .start(|mut ctx: ShardContext<u8>| async move {
            let mut inbox = ctx.take_inbox().unwrap();
            if ctx.id() == 1 {
                // Idle peer: its channel to shard 0 stays empty.
                ctx.shutdown().recv().await;
                return Ok::<_, Never>(());
            }
            for _ in 0..40_000 {
                let raced = future::or(async { inbox.recv().await.map(|_| ()) }, async {
                    future::yield_now().await;
                    Some(())
                });
                raced.await;
            }
            ctx.shutdown_handle().trigger();
            Ok(())
        })
        .unwrap();
    for r in join_within(pool) {
        r.unwrap();
    }
}

/// Same for a flush blocked on a full channel.
#[test]
fn racing_a_blocked_flush_in_a_loop_does_not_overflow_wakers() {
    let pool = PoolBuilder::new([0, 1])
        .mesh_capacity(1)
        .start(|mut ctx: ShardContext<u32>| async move {
            let mut inbox = ctx.take_inbox().unwrap();
            if ctx.id() == 1 {
                ctx.shutdown().recv().await;
                let mut got = vec![];
                while got.len() < 2 {
                    got.extend(
                        inbox
                            .recv()
                            .await
                            .expect("shard 0 flushes before exiting")
                            .messages,
                    );
                }
                return Ok::<_, Never>(got);
            }
            let mut outbox = ctx.outbox();
            outbox.push(1, 0).unwrap();
            outbox.flush().await.unwrap();
            outbox.push(1, 1).unwrap();
            // The channel holds one batch and shard 1 is not reading: this
            // flush stays blocked while we race it.
            for _ in 0..40_000 {
                let raced = future::or(async { outbox.flush().await.map(|_| false) }, async {
                    future::yield_now().await;
                    Ok(true)
                });
                assert!(raced.await.unwrap(), "flush cannot finish yet");
            }
            assert_eq!(outbox.buffered(), 1);
            ctx.shutdown_handle().trigger();
            outbox.flush().await.unwrap();
            Ok(vec![])
        })
        .unwrap();
    let out: Vec<_> = join_within(pool).into_iter().map(Result::unwrap).collect();
    assert_eq!(out[1], vec![0, 1]);
}

#[test]
fn the_inbox_ends_after_every_peer_has_exited_and_drained() {
    let pool = PoolBuilder::new([0, 1])
        .start(|mut ctx: ShardContext<u32>| async move {
            let mut inbox = ctx.take_inbox().unwrap();
            if ctx.id() == 1 {
                let mut outbox = ctx.outbox();
                for i in 0..3 {
                    outbox.push(0, i).unwrap();
                    outbox.flush().await.unwrap();
                }
                return Ok::<_, Never>(vec![]);
            }
            let mut got = vec![];
            while let Some(batch) = inbox.recv().await {
                got.extend(batch.messages);
            }
            Ok(got)
        })
        .unwrap();
    let out: Vec<_> = join_within(pool).into_iter().map(Result::unwrap).collect();
    assert_eq!(out[0], vec![0, 1, 2]);
}
