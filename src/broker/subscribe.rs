//! SUBSCRIBE and UNSUBSCRIBE, and retained messages sent on subscribe.

use std::time::Instant;

use bytestring::ByteString;

use super::{Broker, Client, Forward};
use crate::protocol::{
    Packet, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe, Version,
};
use crate::session::{Delivery, Subscription};
use crate::topic::TopicFilter;

impl Broker {
    pub(super) fn subscribe(&mut self, client: &Client, subscribe: Subscribe, now: Instant) {
        let mut reason_codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        for (filter, options) in &subscribe.filters {
            if filter.levels().count() > self.settings.max_topic_levels {
                reason_codes.push(ReasonCode::TopicFilterInvalid);
                continue;
            }
            let sub = Subscription {
                options: *options,
                id: subscribe.properties.subscription_identifier,
            };
            let Some(entry) = self.sessions.get_mut(&client.client_id) else {
                return;
            };
            let existed = entry.session.subscribe(filter.clone(), sub);
            self.router.subscribe(&client.client_id, filter, sub);
            if !existed && self.index.add(filter, self.shard) == 1 {
                self.broadcast(Forward::Subscribed(filter.detached()));
            }
            if !existed && filter.share_group().is_some() {
                // A new member, online: it is subscribing.
                self.count_group(filter, 1, 1);
            }
            // Retained messages go to new non-shared subscribers only as retain
            // handling allows [MQTT-3.3.1-9, MQTT-3.3.1-10, MQTT-3.3.1-11].
            let send_retained = filter.share_group().is_none()
                && match options.retain_handling {
                    RetainHandling::OnSubscribe => true,
                    RetainHandling::OnNewSubscribe => !existed,
                    RetainHandling::Never => false,
                };
            if send_retained {
                self.retained.for_each_match(filter, |m| {
                    retained.push(Delivery {
                        message: m.clone(),
                        qos: options.qos.min(m.qos),
                        retain: true,
                        subscription_ids: sub.id.into_iter().collect(),
                        non_retry: options.non_retry,
                        non_persistence: options.non_persistence,
                    })
                });
            }
            reason_codes.push(match options.qos {
                crate::protocol::QoS::AtMostOnce => ReasonCode::Success,
                crate::protocol::QoS::AtLeastOnce => ReasonCode::GrantedQos1,
                crate::protocol::QoS::ExactlyOnce => ReasonCode::GrantedQos2,
            });
        }
        let ack = SubAck {
            packet_id: subscribe.packet_id,
            reason_codes,
            properties: Default::default(),
        };
        // The SUBACK goes before the retained messages it lets through.
        self.output(client.conn).packets.push(Packet::SubAck(ack));
        let Some(entry) = self.sessions.get_mut(&client.client_id) else {
            return;
        };
        let out = &mut self.outputs.to(client.conn).packets;
        for delivery in retained {
            if let Some(drop) = entry.session.deliver(delivery, now, out) {
                self.stats.count_drops(std::slice::from_ref(&drop));
            }
        }
    }

    pub(super) fn unsubscribe(&mut self, client: &Client, unsubscribe: Unsubscribe) {
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let existed = self
                .sessions
                .get_mut(&client.client_id)
                .is_some_and(|e| e.session.unsubscribe(filter));
            if existed {
                self.drop_subscription(&client.client_id, filter, true);
                reason_codes.push(ReasonCode::Success);
            } else {
                reason_codes.push(ReasonCode::NoSubscriptionExisted);
            }
        }
        if client.version != Version::V5 {
            reason_codes.clear();
        }
        let ack = UnsubAck {
            packet_id: unsubscribe.packet_id,
            reason_codes,
            properties: Default::default(),
        };
        self.output(client.conn).packets.push(Packet::UnsubAck(ack));
    }

    /// Removes a subscription from the router and the shard index (the session
    /// has already forgotten it, or is going away). `online`: whether the
    /// session counted as an online member of its share group, if shared.
    pub(super) fn drop_subscription(
        &mut self,
        client_id: &ByteString,
        filter: &TopicFilter,
        online: bool,
    ) {
        if !self.router.unsubscribe(client_id, filter) {
            return;
        }
        if filter.share_group().is_some() {
            self.count_group(filter, -1, -i32::from(online));
        }
        if self.index.remove(filter, self.shard) == Some(0) {
            self.broadcast(Forward::Unsubscribed(filter.detached()));
        }
    }
}
