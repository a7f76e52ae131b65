//! SIGTERM triggers shutdown. Its own test binary, because signal handlers
//! are process-wide and the signal must not hit other tests.

mod common;

use common::{join_within, Never};
use shards::{PoolBuilder, ShardContext};

#[test]
fn sigterm_shuts_the_pool_down() {
    let pool = PoolBuilder::new([0, 1])
        .catch_signals(true)
        .start(|ctx: ShardContext<()>| async move {
            ctx.shutdown().recv().await;
            Ok::<_, Never>(())
        })
        .unwrap();
    let handle = pool.shutdown_handle();
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
    for r in join_within(pool) {
        r.unwrap();
    }
    assert!(handle.is_triggered());
}
