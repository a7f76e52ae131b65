//! Running async code on a fresh glommio executor in unit tests.

use std::future::Future;

use glommio::{BuilderErrorKind, GlommioError, LocalExecutorBuilder, Placement};

/// Runs `f()` to completion on a new, unpinned executor on its own thread
/// and returns its output. A panic inside propagates to the caller, so
/// `assert!`s in the future fail the test as usual.
///
/// Unpinned, with the pool's 1 MiB of io memory, so many tests can run in
/// parallel on a two-core machine.
///
/// # Panics
/// If the executor cannot be created (io_uring unavailable), or `f` panics.
pub fn test_executor<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let mut builder = LocalExecutorBuilder::new(Placement::Unbound)
        .name("test-shard")
        .io_memory(1 << 20);
    if cfg!(debug_assertions) {
        builder = builder.detect_stalls(Some(Box::new(glommio::DefaultStallDetectionHandler {})));
    }
    let handle = match builder.spawn(f) {
        Ok(handle) => handle,
        Err(e) => panic!("could not start a test executor: {e}"),
    };
    match handle.join() {
        Ok(t) => t,
        Err(GlommioError::BuilderError(BuilderErrorKind::ThreadPanic(payload))) => {
            std::panic::resume_unwind(payload)
        }
        Err(e) => panic!("test executor failed: {e}"),
    }
}
