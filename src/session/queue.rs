//! The bounded queue of deliveries waiting for room in the inflight window, or
//! for their offline client to come back.

use std::collections::VecDeque;

use super::Delivery;

/// What to do when a queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Keep what is queued and drop the new message (Mosquitto, VerneMQ default).
    #[default]
    DropNewest,
    /// Make room by dropping the oldest queued message.
    DropOldest,
}

/// A FIFO of deliveries with a capacity, counting what it drops.
#[derive(Debug, Default)]
pub struct Queue {
    items: VecDeque<Delivery>,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Appends `delivery` unless the queue holds `capacity` already; then the
    /// policy says which message is dropped, and that one is returned.
    pub fn push(
        &mut self,
        delivery: Delivery,
        capacity: usize,
        policy: OverflowPolicy,
    ) -> Option<Delivery> {
        if self.items.len() < capacity {
            self.items.push_back(delivery);
            return None;
        }
        match policy {
            OverflowPolicy::DropNewest => Some(delivery),
            OverflowPolicy::DropOldest => {
                let dropped = self.items.pop_front();
                if capacity > 0 {
                    self.items.push_back(delivery);
                    dropped
                } else {
                    Some(delivery)
                }
            }
        }
    }

    pub fn pop(&mut self) -> Option<Delivery> {
        self.items.pop_front()
    }

    /// Appends a delivery the store kept, whatever the bound: it was within
    /// it when it was queued.
    pub fn restore(&mut self, delivery: Delivery) {
        self.items.push_back(delivery);
    }

    /// Puts back a delivery taken with [`Queue::pop`] that could not be sent.
    pub fn push_front(&mut self, delivery: Delivery) {
        self.items.push_front(delivery);
    }

    /// Removes every delivery `keep` rejects, giving them back.
    pub fn drain_unless(&mut self, mut keep: impl FnMut(&Delivery) -> bool) -> Vec<Delivery> {
        let mut dropped = Vec::new();
        self.items.retain(|d| {
            let k = keep(d);
            if !k {
                dropped.push(d.clone());
            }
            k
        });
        dropped
    }
}
