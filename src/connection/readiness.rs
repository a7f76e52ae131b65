//! The shard's epoll set: when each of its sockets can be read or written.
//!
//! glommio 0.9 reads a socket by trying `recv` and, when nothing is there,
//! arming a one-shot io_uring poll on it; after every read that does not fill
//! the buffer it arms another. Every poll is set up and torn down in the
//! kernel, keeps a source of about 500 bytes per idle connection, and
//! completes as task work that interrupts the running shard, since glommio
//! creates its rings without `IORING_SETUP_COOP_TASKRUN` (benchmarks.md, "where
//! a conn-storm connection's CPU goes"). The client sockets here are instead
//! registered once, edge-triggered, in an epoll set of the shard; a task takes
//! what is ready with a non-blocking `epoll_wait` and wakes the tasks waiting
//! on it. The shard sleeps on one io_uring poll, on the epoll descriptor
//! itself, and only when it has found nothing ready.
//!
//! Each socket has a slot with its waiting reader and writer, and whether it
//! may have input or room for output: a short read or write clears the flag
//! and an edge sets it again, so a drained socket is not asked again (glommio
//! arms its "early poll" for the same reason).
//!
//! A reader may go to sleep instead of waiting ([`Readiness::sleep`]): its
//! task ends, and what it needs to go on waits in its slot, resumed by the
//! poller at the socket's next input edge. An idle connection then keeps no
//! task (about 450 bytes each, issue 15).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_lite::AsyncRead;
use slab::Slab;

/// Events taken per `epoll_wait`; more wait for the next round.
const EVENTS: usize = 1024;

/// A socket's place in the set.
pub type Token = usize;

/// A sleeping reader, resumed by the poller when its socket has input or
/// hangs up.
pub trait Resume {
    fn resume(self: Box<Self>);
}

pub type Sleeper = Box<dyn Resume>;

/// Who waits for a socket's input.
#[derive(Default)]
enum Reader {
    #[default]
    None,
    /// A reader task, woken at the next input edge.
    Task(Waker),
    /// A reader that went to sleep ([`Readiness::sleep`]); its next input
    /// edge (or hang-up) calls it. One field with the task's: a slot per
    /// connection is 48 bytes, not 56.
    Asleep(Sleeper),
}

#[derive(Default)]
struct Slot {
    reader: Reader,
    writer: Option<Waker>,
    /// False after a read that found the socket drained, until an edge.
    readable: bool,
    /// False after a write that filled the send buffer, until an edge.
    writable: bool,
    /// The peer ended its side (or the socket failed): no input edge comes
    /// any more and every read returns at once, so no read waits from now on.
    read_closed: bool,
    /// The same for output: the connection is gone or failed.
    write_closed: bool,
}

impl Slot {
    /// The flag and end of `direction`.
    fn side(&mut self, direction: Direction) -> (&mut bool, bool) {
        match direction {
            Direction::Read => (&mut self.readable, self.read_closed),
            Direction::Write => (&mut self.writable, self.write_closed),
        }
    }

    /// Has `waker` woken at the next edge of `direction`.
    fn set_waiter(&mut self, direction: Direction, waker: &Waker) {
        match (direction, &self.reader, &self.writer) {
            (Direction::Read, Reader::Task(w), _) | (Direction::Write, _, Some(w))
                if w.will_wake(waker) => {}
            (Direction::Read, ..) => self.reader = Reader::Task(waker.clone()),
            (Direction::Write, ..) => self.writer = Some(waker.clone()),
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field(
                "reader",
                &match &self.reader {
                    Reader::None => "none",
                    Reader::Task(_) => "task",
                    Reader::Asleep(_) => "asleep",
                },
            )
            .field("writer", &self.writer)
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("read_closed", &self.read_closed)
            .field("write_closed", &self.write_closed)
            .finish()
    }
}

/// One shard's epoll set and the tasks waiting on its sockets.
#[derive(Debug)]
pub struct Readiness {
    epoll: OwnedFd,
    slots: RefCell<Slab<Slot>>,
    events: RefCell<Vec<libc::epoll_event>>,
    /// Rounds of the poller so far: one per wake-up of a shard with news.
    rounds: Cell<u64>,
}

/// Which way a task waits on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

impl Readiness {
    pub fn new() -> io::Result<Readiness> {
        // SAFETY: a plain system call; a non-negative result is a new
        // descriptor that nothing else owns.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Readiness {
            // SAFETY: see above.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            slots: RefCell::new(Slab::new()),
            events: RefCell::new(Vec::with_capacity(EVENTS)),
            rounds: Cell::new(0),
        })
    }

    /// Adds `fd` to the set, for input, output and hang-up, edge-triggered.
    pub fn register(&self, fd: BorrowedFd<'_>) -> io::Result<Token> {
        let token = self.slots.borrow_mut().insert(Slot {
            readable: true,
            writable: true,
            ..Slot::default()
        });
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token as u64,
        };
        // SAFETY: both descriptors are open for the duration of the call.
        let done = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut event,
            )
        };
        if done < 0 {
            let e = io::Error::last_os_error();
            self.slots.borrow_mut().remove(token);
            return Err(e);
        }
        Ok(token)
    }

    /// Forgets a socket whose descriptor is about to close, and with it the
    /// last reference to the socket: the kernel takes it out of the set then.
    /// A socket with a duplicate (a hand-off to another shard) would stay in
    /// it: [`Readiness::deregister`] that one.
    pub fn forget(&self, token: Token) {
        // Dropped after the borrow: what a slot holds may hold sockets.
        let slot = self.slots.borrow_mut().try_remove(token);
        drop(slot);
    }

    /// Takes `fd` out of the set. Must come before the descriptor closes: a
    /// duplicate (a hand-off to another shard) would otherwise keep it in.
    pub fn deregister(&self, token: Token, fd: BorrowedFd<'_>) {
        // SAFETY: both descriptors are open for the duration of the call.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            );
        }
        self.forget(token);
    }

    /// Whether the socket may have something for `direction`; false means
    /// the last try found it drained (or full) and no edge came since.
    pub fn ready(&self, token: Token, direction: Direction) -> bool {
        let slots = self.slots.borrow();
        slots.get(token).is_none_or(|slot| match direction {
            Direction::Read => slot.readable,
            Direction::Write => slot.writable,
        })
    }

    /// Marks the socket drained (or full) until its next edge.
    pub fn drained(&self, token: Token, direction: Direction) {
        if let Some(slot) = self.slots.borrow_mut().get_mut(token) {
            let (flag, closed) = slot.side(direction);
            *flag = closed;
        }
    }

    /// Marks the socket drained (or full) and wakes `waker` at its next edge;
    /// at once if no edge will come.
    pub fn wait(&self, token: Token, direction: Direction, waker: &Waker) {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(token) else {
            return waker.wake_by_ref();
        };
        let (flag, closed) = slot.side(direction);
        *flag = closed;
        if closed {
            return waker.wake_by_ref();
        }
        slot.set_waiter(direction, waker);
    }

    /// Puts the socket's reader to sleep: `sleeper` is resumed at the next
    /// input edge or hang-up. Only for a socket found drained since its last
    /// edge, so that no input waits unseen: otherwise (or for a socket no
    /// longer in the set) `sleeper` comes back.
    pub fn sleep<S: Resume + 'static>(&self, token: Token, sleeper: Box<S>) -> Result<(), Box<S>> {
        match self.slots.borrow_mut().get_mut(token) {
            Some(slot) if !slot.readable && !slot.read_closed => {
                slot.reader = Reader::Asleep(sleeper);
                Ok(())
            }
            _ => Err(sleeper),
        }
    }

    /// How many rounds the poller went through.
    pub fn rounds(&self) -> u64 {
        self.rounds.get()
    }

    /// Takes what is ready without blocking and wakes whoever waits on it;
    /// the sleeping readers with input are added to `resumed`.
    fn dispatch(&self, resumed: &mut Vec<Sleeper>) -> io::Result<()> {
        let mut events = self.events.borrow_mut();
        events.clear();
        // SAFETY: the buffer has room for `EVENTS` entries; the kernel
        // writes at most that many and says how many.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS as i32,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: the kernel initialised the first `n` entries.
        unsafe { events.set_len(n as usize) };
        let mut slots = self.slots.borrow_mut();
        for event in events.iter() {
            let Some(slot) = slots.get_mut(event.u64 as usize) else {
                continue;
            };
            let bits = event.events as i32;
            let failed = bits & (libc::EPOLLHUP | libc::EPOLLERR) != 0;
            let hangup = failed || bits & libc::EPOLLRDHUP != 0;
            slot.read_closed |= hangup;
            slot.write_closed |= failed;
            if hangup || bits & libc::EPOLLIN != 0 {
                slot.readable = true;
                match std::mem::take(&mut slot.reader) {
                    Reader::Task(w) => w.wake(),
                    Reader::Asleep(sleeper) => resumed.push(sleeper),
                    Reader::None => {}
                }
            }
            if failed || bits & libc::EPOLLOUT != 0 {
                slot.writable = true;
                if let Some(w) = slot.writer.take() {
                    w.wake();
                }
            }
        }
        Ok(())
    }

    /// The shard's poller: wakes the tasks whose sockets are ready, then
    /// waits until the set has news again. Ends when `stop` fires.
    pub async fn run(&self, stop: &shards::Shutdown) {
        let mut resumed = Vec::new();
        loop {
            self.rounds.set(self.rounds.get() + 1);
            if let Err(e) = self.dispatch(&mut resumed) {
                tracing::error!(error = %e, "epoll_wait failed; sockets no longer served");
                return;
            }
            // Not under the set's borrows: a reader puts itself back to
            // sleep. Each handles its input here, so the others get their
            // turn between two.
            for sleeper in resumed.drain(..) {
                sleeper.resume();
                glommio::yield_if_needed().await;
            }
            let stopped = futures_lite::future::or(
                async {
                    stop.recv().await;
                    true
                },
                async {
                    if let Err(e) = until_readable(self.epoll.as_fd()).await {
                        tracing::warn!(error = %e, "waiting on the epoll set");
                        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                    }
                    false
                },
            )
            .await;
            if stopped {
                return;
            }
        }
    }
}

/// Waits, through glommio's reactor, until `fd` has input (for an epoll
/// descriptor: until some socket in the set is ready).
///
/// glommio 0.9's public API has no poll on a bare descriptor. A glommio
/// stream arms a one-shot poll for input on its descriptor when it is
/// created, and its first read waits for that poll; so a stream made on a
/// duplicate of `fd` waits for it. Once woken, the stream is not read again
/// (on a descriptor that is no socket that read would only fail) but
/// dropped, which closes the duplicate. A spurious wake-up returns early,
/// which only costs the caller one look at the set. The tests below fail if
/// glommio stops working this way: the poller would either never wake or
/// never sleep.
async fn until_readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let dup: RawFd = fd.try_clone_to_owned()?.into_raw_fd();
    // SAFETY: `dup` is a descriptor nobody else owns; the stream closes it.
    let mut stream = unsafe { glommio::net::TcpStream::from_raw_fd(dup) };
    let mut byte = [0u8; 1];
    let mut waiting = false;
    poll_fn(|cx: &mut Context<'_>| {
        if std::mem::replace(&mut waiting, true) {
            return Poll::Ready(());
        }
        Pin::new(&mut stream).poll_read(cx, &mut byte).map(drop)
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::rc::Rc;
    use std::time::Duration;

    use bytes::BytesMut;
    use shards::test_executor;

    use super::Readiness;
    use crate::connection::{read_scratch, Socket};

    /// A connected pair: the broker's side in the set, the peer's plain.
    fn pair(readiness: &Rc<Readiness>) -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (ours, _) = listener.accept().expect("accept");
        (Socket::new(ours.into(), readiness).expect("register"), peer)
    }

    fn poller(readiness: &Rc<Readiness>) -> (shards::Shutdown, glommio::Task<()>) {
        let stop = shards::Shutdown::new();
        let task = glommio::spawn_local({
            let (readiness, stop) = (readiness.clone(), stop.clone());
            async move { readiness.run(&stop).await }
        });
        (stop, task)
    }

    #[test]
    fn a_read_waits_for_input_and_the_shard_sleeps_meanwhile() {
        test_executor(|| async {
            let readiness = Rc::new(Readiness::new().expect("epoll"));
            let (socket, mut peer) = pair(&readiness);
            let (stop, task) = poller(&readiness);
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                peer.write_all(b"hello").expect("write");
                peer
            });
            let mut buf = BytesMut::new();
            let n = socket.read(&mut buf, &read_scratch()).await.expect("read");
            assert_eq!((n, &buf[..]), (5, &b"hello"[..]));
            // Waiting 300 ms took a round at the start, one for the socket's
            // first (writable) edge and one for the input: a poller that did
            // not sleep on the set would have gone round thousands of times.
            assert!(readiness.rounds() <= 4, "{} rounds", readiness.rounds());
            drop(writer.join());
            stop.trigger();
            task.await;
        });
    }

    /// The memory an idle connection keeps (issue 15): a packet cut from the
    /// read buffer leaves an empty buffer that still holds the packet's
    /// allocation, which only the packet should keep once the socket is
    /// drained.
    #[test]
    fn a_drained_socket_leaves_no_buffer_behind_its_packets() {
        test_executor(|| async {
            let readiness = Rc::new(Readiness::new().expect("epoll"));
            let (socket, mut peer) = pair(&readiness);
            let (stop, task) = poller(&readiness);
            // More than 8 bytes: the buffer is then made just as long, and
            // the one left after the cut has no capacity at all.
            peer.write_all(b"a CONNECT, say").expect("write");
            let scratch = read_scratch();
            let mut buf = BytesMut::new();
            assert_eq!(socket.read(&mut buf, &scratch).await.expect("read"), 14);
            let packet = buf.split_to(14).freeze();
            assert!(!packet.is_unique(), "the buffer shares the packet's memory");
            assert!(socket.try_read(&mut buf, &scratch).is_none(), "drained");
            assert!(packet.is_unique(), "the drained buffer let go of it");
            stop.trigger();
            task.await;
        });
    }

    /// Every connection has a slot, idle or not (issue 15).
    #[test]
    fn a_slot_stays_small() {
        let slot = std::mem::size_of::<super::Slot>();
        assert!(slot <= 48, "a slot is {slot} bytes");
    }

    /// Sets its flag when resumed.
    struct Flag(Rc<std::cell::Cell<bool>>);

    impl super::Resume for Flag {
        fn resume(self: Box<Self>) {
            self.0.set(true);
        }
    }

    #[test]
    fn a_sleeping_reader_is_resumed_by_input_and_not_before() {
        test_executor(|| async {
            let readiness = Rc::new(Readiness::new().expect("epoll"));
            let (socket, mut peer) = pair(&readiness);
            let (stop, task) = poller(&readiness);
            let resumed = Rc::new(std::cell::Cell::new(false));
            // Not drained yet: input may be waiting, so no sleep.
            let flag = Box::new(Flag(resumed.clone()));
            let flag = socket
                .sleep(flag)
                .expect_err("a socket not drained went to sleep");
            let mut buf = BytesMut::new();
            assert!(socket.try_read(&mut buf, &read_scratch()).is_none());
            assert!(socket.sleep(flag).is_ok());
            glommio::timer::sleep(Duration::from_millis(200)).await;
            assert!(!resumed.get(), "resumed without input");
            peer.write_all(b"hello").expect("write");
            for _ in 0..200 {
                if resumed.get() {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            assert!(resumed.get(), "input did not resume the reader");
            let read = socket.try_read(&mut buf, &read_scratch());
            assert!(matches!(read, Some(Ok(5))), "{read:?}");
            stop.trigger();
            task.await;
        });
    }

    #[test]
    fn a_write_to_a_full_socket_goes_on_when_the_peer_reads() {
        test_executor(|| async {
            let readiness = Rc::new(Readiness::new().expect("epoll"));
            let (socket, mut peer) = pair(&readiness);
            let (stop, task) = poller(&readiness);
            // Far more than the two socket buffers hold: the write must wait
            // for the reader below.
            let data = vec![7u8; 32 << 20];
            let reader = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                let mut got = Vec::new();
                peer.read_to_end(&mut got).expect("read");
                got.len()
            });
            let written = socket.write_all(&data, None).await;
            assert!(matches!(written, Some(Ok(()))), "{written:?}");
            socket.shutdown();
            assert_eq!(reader.join().expect("reader"), data.len());
            stop.trigger();
            task.await;
        });
    }
}
