//! SUBSCRIBE and UNSUBSCRIBE, and retained messages sent on subscribe.

use std::time::Instant;

use bytestring::ByteString;

use super::{Broker, Client, Forward};
use crate::events::{Event, EventKind, TopicInfo};
use crate::protocol::{
    Packet, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe, Version,
};
use crate::session::{Delivery, Subscription};
use crate::topic::TopicFilter;

/// What [`Broker::attach_subscription`] did.
pub(super) struct Attached {
    /// The session had this filter already (its options are replaced).
    existed: bool,
    /// The filter is new to this shard: the other shards were told.
    announced: bool,
}

impl Broker {
    /// A SUBSCRIBE: each filter the ACL allows is added; a denied one gets
    /// 0x87 not authorized (0x80 in MQTT 3) in the SUBACK.
    pub(super) fn subscribe(&mut self, client: &Client, subscribe: Subscribe, now: Instant) {
        let mut reason_codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        let mut announced = false;
        // Gathered only for a sink that wants `on_subscribe`.
        let mut topics = self
            .events
            .wants(EventKind::Subscribe)
            .then(|| Vec::with_capacity(subscribe.filters.len()));
        for (filter, options) in &subscribe.filters {
            let (mut label, mut pattern) = (None, None);
            let code = if filter.levels().count() > self.settings.max_topic_levels {
                ReasonCode::TopicFilterInvalid
            } else {
                let decision = self.acl.subscribe(&client.identity, filter);
                label = decision.label;
                pattern = decision.pattern;
                if !decision.allow {
                    ReasonCode::NotAuthorized
                } else {
                    let sub = Subscription {
                        options: *options,
                        id: subscribe.properties.subscription_identifier,
                    };
                    match self.add_subscription(client, filter, sub, &mut retained) {
                        Some(new_here) => announced |= new_here,
                        None => return,
                    }
                    match options.qos {
                        QoS::AtMostOnce => ReasonCode::Success,
                        QoS::AtLeastOnce => ReasonCode::GrantedQos1,
                        QoS::ExactlyOnce => ReasonCode::GrantedQos2,
                    }
                }
            };
            if let Some(topics) = &mut topics {
                topics.push(TopicInfo {
                    filter: filter.clone(),
                    qos: if code.is_error() { 0x80 } else { code as u8 },
                    label,
                    pattern,
                });
            }
            reason_codes.push(code);
        }
        if let Some(topics) = &topics {
            self.events.emit(EventKind::Subscribe, || Event::Subscribe {
                who: &client.identity,
                topics,
            });
        }
        let ack = SubAck {
            packet_id: subscribe.packet_id,
            reason_codes,
            properties: Default::default(),
        };
        // The SUBACK goes before the retained messages it lets through.
        let mut packets = vec![Packet::SubAck(ack)];
        if let Some(entry) = self.sessions.get_mut(client.client_id()) {
            for delivery in retained {
                if let Some(drop) = entry.session.deliver(delivery, now, &mut packets) {
                    self.stats.count_drops(std::slice::from_ref(&drop));
                    self.events
                        .dropped(client.client_id(), std::slice::from_ref(&drop));
                }
            }
            self.events.delivered(&client.identity, &packets[1..]);
        }
        self.reply(client, packets, announced, now);
    }

    /// Adds (or replaces) one subscription of `client`, and gathers the
    /// retained messages it gets into `retained`. `None` if the session is
    /// gone; else whether the filter is new to this shard.
    fn add_subscription(
        &mut self,
        client: &Client,
        filter: &TopicFilter,
        sub: Subscription,
        retained: &mut Vec<Delivery>,
    ) -> Option<bool> {
        let options = &sub.options;
        // A new member of a share group is online: it is subscribing.
        let Attached { existed, announced } =
            self.attach_subscription(client.client_id(), filter, sub, true)?;
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
                    share_group: None,
                    stored: None,
                })
            });
        }
        Some(announced)
    }

    pub(super) fn unsubscribe(&mut self, client: &Client, unsubscribe: Unsubscribe, now: Instant) {
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let existed = self
                .sessions
                .get_mut(client.client_id())
                .and_then(|e| e.session.unsubscribe(filter).then_some(e.generation));
            if let Some(generation) = existed {
                self.store_subscription(client.client_id(), generation, filter, None);
                self.drop_subscription(client.client_id(), filter, true);
                reason_codes.push(ReasonCode::Success);
            } else {
                reason_codes.push(ReasonCode::NoSubscriptionExisted);
            }
        }
        self.events
            .emit(EventKind::Unsubscribe, || Event::Unsubscribe {
                who: &client.identity,
                topics: &unsubscribe.filters,
            });
        if client.version != Version::V5 {
            reason_codes.clear();
        }
        let ack = UnsubAck {
            packet_id: unsubscribe.packet_id,
            reason_codes,
            properties: Default::default(),
        };
        self.reply(client, vec![Packet::UnsubAck(ack)], false, now);
    }

    /// Adds (or replaces) a subscription of the session `client_id`: in the
    /// session, the router and the shard index, and in the store. `online`:
    /// whether a new share-group member counts as online. `None` if there is
    /// no such session.
    pub(super) fn attach_subscription(
        &mut self,
        client_id: &ByteString,
        filter: &TopicFilter,
        sub: Subscription,
        online: bool,
    ) -> Option<Attached> {
        let entry = self.sessions.get_mut(client_id)?;
        let existed = entry.session.subscribe(filter.clone(), sub);
        let generation = entry.generation;
        self.router.subscribe(client_id, filter, sub);
        let announced = !existed && self.index.add(filter, self.shard) == 1;
        if announced {
            self.broadcast(Forward::Subscribed(filter.detached()));
            self.store_route(filter, true);
        }
        if !existed && filter.share_group().is_some() {
            self.count_group(filter, 1, i32::from(online));
        }
        self.store_subscription(client_id, generation, filter, Some(&sub));
        Some(Attached { existed, announced })
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
            self.store_route(filter, false);
        }
    }
}
