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
    /// Bit `kind as u32` set for each kind some sink wants: the broker asks
    /// before building every event, so the answer is one load and a mask.
    wanted: u32,
    /// Reused encoding buffers: no allocation per event once they have grown.
    native: Vec<u8>,
    vmq: BytesMut,
}

impl Fanout {
    pub fn new(sinks: Vec<StreamSink>) -> Fanout {
        let wanted = EventKind::ALL
            .iter()
            .filter(|&&kind| sinks.iter().any(|s| s.wants(kind)))
            .fold(0, |mask, &kind| mask | 1 << kind as u32);
        Fanout {
            sinks,
            wanted,
            native: Vec::new(),
            vmq: BytesMut::new(),
        }
    }
}

impl EventSink for Fanout {
    fn wants(&self, kind: EventKind) -> bool {
        self.wanted & 1 << kind as u32 != 0
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

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::sync::Arc;

    use super::*;
    use crate::config::SinkConfig;
    use crate::events::sink::{Shared, SinkSpec};
    use crate::metrics::EventSinkMetrics;

    fn sink(hooks: &[&str]) -> StreamSink {
        let mut config = SinkConfig::new("127.0.0.1:1");
        config.hooks = hooks.iter().map(|h| h.to_string()).collect();
        let spec = Arc::new(SinkSpec {
            name: "test".to_owned(),
            addr: "127.0.0.1:1".parse().unwrap(),
            config,
            metrics: Arc::new(EventSinkMetrics::new("test".to_owned(), vec![], 1)),
        });
        StreamSink::new(Rc::new(Shared::new(spec, 0)))
    }

    #[test]
    fn wants_what_any_sink_wants() {
        let fanout = Fanout::new(vec![
            sink(&["on_publish"]),
            sink(&["on_deliver", "on_session_expired"]),
        ]);
        for kind in EventKind::ALL {
            let want = matches!(
                kind,
                EventKind::Publish | EventKind::Deliver | EventKind::SessionExpired
            );
            assert_eq!(fanout.wants(kind), want, "{kind:?}");
        }
    }
}
