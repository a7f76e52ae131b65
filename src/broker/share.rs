//! Share groups across shards: each shard counts its own members (and online
//! members) of each group and tells every shard when a count changes, so the
//! shard a message is published on can pick one shard to serve each group
//! (see [`crate::router`]).

use crate::hash::HashMap;

use bytestring::ByteString;

use super::{Broker, Forward};
use crate::router::GroupMembers;
use crate::topic::TopicFilter;

/// This shard's members of each share group, by `$share/<group>/<filter>`.
pub(super) type LocalGroups = HashMap<TopicFilter, GroupMembers>;

impl Broker {
    /// Changes this shard's count for the share group `filter` by `members`
    /// and `online`, and tells every shard (this one included) the new count.
    pub(super) fn count_group(&mut self, filter: &TopicFilter, members: i32, online: i32) {
        let entry = self.groups.entry(filter.detached()).or_default();
        entry.members = entry.members.saturating_add_signed(members);
        entry.online = entry.online.saturating_add_signed(online);
        let count = *entry;
        if count.members == 0 {
            self.groups.remove(filter);
        }
        self.router.set_group(filter, self.shard, count);
        self.broadcast(Forward::ShareGroup(filter.detached(), count));
    }

    /// The client's shared subscriptions went online (`+1`) or offline (`-1`).
    pub(super) fn count_online(&mut self, client_id: &ByteString, online: i32) {
        let Some(entry) = self.sessions.get(client_id) else {
            return;
        };
        let shared: Vec<TopicFilter> = entry
            .session
            .subscriptions()
            .filter(|(f, _)| f.share_group().is_some())
            .map(|(f, _)| f.clone())
            .collect();
        for filter in shared {
            self.count_group(&filter, 0, online);
        }
    }
}
