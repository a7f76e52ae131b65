//! One sink's buffer on one shard, sans-IO: the batch being filled, the
//! frames ready to write, and the byte budget (`buffer-bytes`) that decides
//! when new events are dropped.
//!
//! Why one budget for everything: a consumer that is slow, absent or not
//! acking should cost a fixed amount of memory, whatever the reason. The
//! budget counts the open batch, the frames waiting for a connection, the
//! frames being written and, with acks, the frames written but not acked.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::config::SinkFormat;
use crate::events::frame::NativeBatch;

/// A finished frame: whole native frames, or one or more whole vmq frames.
#[derive(Debug, Clone)]
pub struct Frame {
    pub bytes: Bytes,
    /// Sequence number of the frame's last event; what an ack names (native).
    pub last_seq: u64,
    /// Events in the frame, for the sent counter.
    pub events: u32,
}

/// The batch being filled, in the sink's format.
#[derive(Debug)]
enum Batch {
    Native(NativeBatch),
    /// Whole vmq frames back to back: the format has no batch header, but
    /// writing many frames at once is what makes a stream fast.
    Vmq {
        buf: BytesMut,
        events: u32,
    },
}

/// Why an event was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

#[derive(Debug)]
pub struct Outbox {
    batch: Batch,
    /// A batch this big is finished at once.
    max_batch: usize,
    /// `buffer-bytes`: the most `held` may reach.
    limit: usize,
    /// Bytes of the open batch, `ready`, and frames taken and not released.
    held: usize,
    /// Sequence number of the next event (native; per sink, per shard).
    /// A dropped event uses one up too, so the consumer sees the gap.
    next_seq: u64,
    /// An event was dropped since the open batch's last event: the batch
    /// must end there, as a frame's sequence numbers are consecutive.
    gap: bool,
    /// Finished frames, oldest first; replays go back to the front.
    ready: VecDeque<Frame>,
}

impl Outbox {
    pub fn new(format: SinkFormat, shard: u16, max_batch: usize, limit: usize) -> Outbox {
        let batch = match format {
            SinkFormat::Native => Batch::Native(NativeBatch::new(shard)),
            SinkFormat::VmqCompat => Batch::Vmq {
                buf: BytesMut::new(),
                events: 0,
            },
        };
        Outbox {
            batch,
            max_batch,
            limit,
            held: 0,
            next_seq: 1,
            gap: false,
            ready: VecDeque::new(),
        }
    }

    /// Adds one encoded event (for vmq, a whole frame) to the open batch,
    /// unless the budget is spent: then the newest event is the one dropped.
    /// Returns whether this event opened a batch (the caller starts its
    /// flush timer). Finishes the batch when it reached `max-batch-bytes`, or
    /// before this event when one was dropped since the last.
    pub fn push(&mut self, encoded: &[u8]) -> Result<bool, Full> {
        // A varint length prefix is at most 10 bytes; the header is counted
        // when the batch opens.
        let header = match &self.batch {
            Batch::Native(b) if b.is_empty() => b.len(),
            _ => 0,
        };
        if self.held + header + encoded.len() + 10 > self.limit {
            self.skip();
            return Err(Full);
        }
        if std::mem::take(&mut self.gap) {
            self.finish();
        }
        let before = self.batch_len();
        let was_empty = match &mut self.batch {
            Batch::Native(b) => {
                let was_empty = b.is_empty();
                b.push(self.next_seq, encoded);
                self.next_seq += 1;
                was_empty
            }
            Batch::Vmq { buf, events } => {
                buf.extend_from_slice(encoded);
                *events += 1;
                *events == 1
            }
        };
        let before = if was_empty { 0 } else { before };
        self.held += self.batch_len() - before;
        if self.batch_len() >= self.max_batch {
            self.finish();
            return Ok(false);
        }
        Ok(was_empty)
    }

    /// Bytes in the open batch; 0 when it has no event (a native batch's
    /// header placeholder is not held yet).
    fn batch_len(&self) -> usize {
        match &self.batch {
            Batch::Native(b) if b.is_empty() => 0,
            Batch::Native(b) => b.len(),
            Batch::Vmq { buf, .. } => buf.len(),
        }
    }

    /// Moves the open batch, if it has events, to the ready frames.
    /// Returns whether it did.
    pub fn finish(&mut self) -> bool {
        let frame = match &mut self.batch {
            Batch::Native(b) if b.is_empty() => return false,
            Batch::Native(b) => {
                let events = b.count();
                Frame {
                    last_seq: b.first_seq() + u64::from(events) - 1,
                    bytes: b.finish(),
                    events,
                }
            }
            Batch::Vmq { events: 0, .. } => return false,
            Batch::Vmq { buf, events } => Frame {
                bytes: buf.split().freeze(),
                last_seq: 0,
                events: std::mem::take(events),
            },
        };
        self.ready.push_back(frame);
        true
    }

    /// Whether a frame waits for a connection.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The oldest ready frame, for a connection to write. Its bytes stay held
    /// until [`Outbox::release`].
    pub fn take(&mut self) -> Option<Frame> {
        self.ready.pop_front()
    }

    /// Puts frames a lost connection had taken back in front of the others,
    /// in their order: they are sent first after a reconnect.
    pub fn requeue(&mut self, frames: impl DoubleEndedIterator<Item = Frame>) {
        for frame in frames.rev() {
            self.ready.push_front(frame);
        }
    }

    /// A taken frame is done with (written, or acked).
    pub fn release(&mut self, frame: &Frame) {
        self.held = self.held.saturating_sub(frame.bytes.len());
    }

    /// An event is dropped: in the native format it uses up its sequence
    /// number, and the open batch ends before the next event.
    pub fn skip(&mut self) {
        if let Batch::Native(_) = self.batch {
            self.next_seq += 1;
            self.gap = true;
        }
    }

    /// Bytes held against the budget.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Bytes left in the budget.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::frame::{decode_native, decode_vmq};

    #[test]
    fn native_batches_finish_at_max_size_with_consecutive_sequences() {
        let mut o = Outbox::new(SinkFormat::Native, 3, 100, 10_000);
        assert_eq!(o.push(&[1; 10]), Ok(true));
        assert_eq!(o.push(&[2; 10]), Ok(false));
        assert!(!o.has_ready());
        // 24 header + 3 * 11 = 57, then 24 + 6 * 11 = 90, then 101: finished.
        for _ in 0..5 {
            o.push(&[3; 10]).unwrap();
        }
        assert!(o.has_ready());
        let frame = o.take().unwrap();
        assert_eq!((frame.events, frame.last_seq), (7, 7));
        let mut buf = BytesMut::from(&frame.bytes[..]);
        let decoded = decode_native(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!((decoded.shard, decoded.first_seq), (3, 1));
        assert_eq!(decoded.events.len(), 7);
        assert_eq!(o.held(), frame.bytes.len());
        o.release(&frame);
        assert_eq!(o.held(), 0);

        assert_eq!(o.push(b"x"), Ok(true), "a new batch starts its timer");
        assert!(o.finish());
        assert!(!o.finish(), "an empty batch is not a frame");
        let frame = o.take().unwrap();
        let mut buf = BytesMut::from(&frame.bytes[..]);
        let decoded = decode_native(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(decoded.first_seq, 8);
    }

    #[test]
    fn a_full_budget_drops_the_newest_and_frees_on_release() {
        let mut o = Outbox::new(SinkFormat::Native, 0, 64, 200);
        let mut taken = 0;
        let mut full = 0;
        for _ in 0..20 {
            match o.push(&[0; 30]) {
                Ok(_) => taken += 1,
                Err(Full) => full += 1,
            }
        }
        assert!(taken > 0 && full > 0, "{taken} taken, {full} dropped");
        assert!(o.held() <= 200, "held {}", o.held());
        o.finish();
        let frames: Vec<Frame> = std::iter::from_fn(|| o.take()).collect();
        let events: u32 = frames.iter().map(|f| f.events).sum();
        assert_eq!(events, taken);
        assert_eq!(
            frames.last().map(|f| f.last_seq),
            Some(u64::from(taken)),
            "drops came after the last event taken"
        );
        for f in &frames {
            o.release(f);
        }
        assert_eq!(o.held(), 0);
        assert!(o.push(&[0; 30]).is_ok(), "room again");
    }

    #[test]
    fn a_drop_leaves_a_sequence_gap_and_ends_the_batch() {
        let mut o = Outbox::new(SinkFormat::Native, 0, 1000, 24 + 2 * 11 + 11);
        o.push(&[0; 10]).unwrap();
        o.push(&[0; 10]).unwrap();
        assert_eq!(o.push(&[0; 10]), Err(Full), "seq 3 dropped");
        let frame = o.take();
        assert!(frame.is_none(), "nothing finished yet");
        o.finish();
        let frame = o.take().unwrap();
        o.release(&frame);
        assert_eq!(o.push(&[0; 10]), Ok(true));
        o.finish();
        let mut buf = BytesMut::from(&o.take().unwrap().bytes[..]);
        let decoded = decode_native(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(
            decoded.first_seq, 4,
            "the dropped event's number is skipped"
        );

        // A drop in the middle of a batch ends it before the next event.
        let mut o = Outbox::new(SinkFormat::Native, 0, 1000, 1000);
        o.push(&[0; 10]).unwrap();
        assert_eq!(o.push(&[0; 2000]), Err(Full));
        assert_eq!(o.push(&[0; 10]), Ok(true), "a new batch");
        let first = o.take().unwrap();
        assert_eq!((first.last_seq, first.events), (1, 1));
        o.finish();
        let mut buf = BytesMut::from(&o.take().unwrap().bytes[..]);
        assert_eq!(
            decode_native(&mut buf, 1 << 20).unwrap().unwrap().first_seq,
            3
        );
    }

    #[test]
    fn requeued_frames_come_first_in_order() {
        let mut o = Outbox::new(SinkFormat::Native, 0, 1, 10_000);
        for i in 0..4u8 {
            o.push(&[i]).unwrap();
        }
        let a = o.take().unwrap();
        let b = o.take().unwrap();
        assert_eq!((a.last_seq, b.last_seq), (1, 2));
        o.requeue(vec![a, b].into_iter());
        let order: Vec<u64> = std::iter::from_fn(|| o.take())
            .map(|f| f.last_seq)
            .collect();
        assert_eq!(order, [1, 2, 3, 4]);
    }

    #[test]
    fn vmq_frames_are_concatenated() {
        let mut o = Outbox::new(SinkFormat::VmqCompat, 0, 1000, 10_000);
        assert_eq!(o.push(b"\0\0\0\x01a"), Ok(true));
        assert_eq!(o.push(b"\0\0\0\x01b"), Ok(false));
        assert!(o.finish());
        let frame = o.take().unwrap();
        assert_eq!(frame.events, 2);
        let mut buf = BytesMut::from(&frame.bytes[..]);
        assert_eq!(decode_vmq(&mut buf, 16).unwrap().unwrap(), &b"a"[..]);
        assert_eq!(decode_vmq(&mut buf, 16).unwrap().unwrap(), &b"b"[..]);
        assert_eq!(o.held(), 10);
    }
}
