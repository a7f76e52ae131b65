//! [`Fanout`]: the shard's one [`EventSink`], forwarding each event to every
//! sink that wants it, encoding it once per format.

use std::time::SystemTime;

use bytes::BytesMut;

use super::stream::StreamSink;
use crate::config::SinkFormat;
use crate::events::convert::{encode_native, encode_vmq};
use crate::events::{Event, EventKind, EventSink};

/// Every sink of one shard, behind the broker's single sink slot.
#[derive(Debug)]
pub struct Fanout {
    sinks: Vec<StreamSink>,
    /// Reused encoding buffers: no allocation per event once they have grown.
    native: Vec<u8>,
    vmq: BytesMut,
}

impl Fanout {
    pub fn new(sinks: Vec<StreamSink>) -> Fanout {
        Fanout {
            sinks,
            native: Vec::new(),
            vmq: BytesMut::new(),
        }
    }
}

impl EventSink for Fanout {
    fn wants(&self, kind: EventKind) -> bool {
        self.sinks.iter().any(|s| s.wants(kind))
    }

    fn emit(&mut self, event: Event<'_>) {
        let mut now = None;
        let (mut native, mut vmq) = (false, false);
        for sink in &mut self.sinks {
            let Some(slot) = sink.admits(&event) else {
                continue;
            };
            if sink.full() {
                sink.drop_event(slot);
                continue;
            }
            let now = *now.get_or_insert_with(SystemTime::now);
            let encoded: &[u8] = match sink.format() {
                SinkFormat::Native => {
                    if !native {
                        native = true;
                        self.native.clear();
                        encode_native(&event, now, &mut self.native);
                    }
                    &self.native
                }
                SinkFormat::VmqCompat => {
                    if !vmq {
                        vmq = true;
                        self.vmq.clear();
                        encode_vmq(&event, now, &mut self.vmq);
                    }
                    &self.vmq
                }
            };
            sink.push(slot, encoded);
        }
    }
}
