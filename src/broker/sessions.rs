//! The shard's sessions by client id.
//!
//! A table of boxed entries keyed by the client id their identity already
//! holds, instead of a map that keeps a second copy of it beside each entry:
//! a slot is then a pointer, not a pointer and a 32-byte `ByteString`, and a
//! table is at most 7/8 full (issue 15: 40 to 55 bytes per idle connection
//! between 10,000 and 19,000 connections).

use std::hash::BuildHasher;

use bytestring::ByteString;
use hashbrown::hash_table::{Entry as Slot, HashTable};

use super::Entry;
use crate::hash::Keyed;

#[derive(Default)]
pub(super) struct SessionTable {
    table: HashTable<Box<Entry>>,
}

fn hash(client_id: &str) -> u64 {
    Keyed.hash_one(client_id)
}

fn key(entry: &Entry) -> &str {
    &entry.identity.client_id
}

impl SessionTable {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn get(&self, client_id: &str) -> Option<&Entry> {
        let found = self.table.find(hash(client_id), |e| key(e) == client_id);
        found.map(|e| &**e)
    }

    pub fn get_mut(&mut self, client_id: &str) -> Option<&mut Entry> {
        let found = self
            .table
            .find_mut(hash(client_id), |e| key(e) == client_id);
        found.map(|e| &mut **e)
    }

    pub fn contains_key(&self, client_id: &str) -> bool {
        self.get(client_id).is_some()
    }

    /// Keeps `entry` under its identity's client id, in place of the one
    /// there, which is returned.
    pub fn insert(&mut self, entry: Box<Entry>) -> Option<Box<Entry>> {
        let client_id = key(&entry);
        match self
            .table
            .entry(hash(client_id), |e| key(e) == client_id, |e| hash(key(e)))
        {
            Slot::Occupied(mut slot) => Some(std::mem::replace(slot.get_mut(), entry)),
            Slot::Vacant(slot) => {
                slot.insert(entry);
                None
            }
        }
    }

    /// The entry of `client_id`, made by `make` if there is none; `make`
    /// must give an entry whose identity has that client id.
    pub fn get_or_insert_with(
        &mut self,
        client_id: &str,
        make: impl FnOnce() -> Box<Entry>,
    ) -> &mut Entry {
        let slot = self
            .table
            .entry(hash(client_id), |e| key(e) == client_id, |e| hash(key(e)))
            .or_insert_with(|| {
                let entry = make();
                debug_assert_eq!(key(&entry), client_id);
                entry
            });
        slot.into_mut()
    }

    pub fn remove(&mut self, client_id: &str) -> Option<Box<Entry>> {
        let found = self
            .table
            .find_entry(hash(client_id), |e| key(e) == client_id);
        found.ok().map(|slot| slot.remove().0)
    }

    /// Each session with its client id.
    pub fn iter(&self) -> impl Iterator<Item = (&ByteString, &Entry)> {
        self.table.iter().map(|e| (&e.identity.client_id, &**e))
    }

    pub fn values(&self) -> impl Iterator<Item = &Entry> {
        self.table.iter().map(|e| &**e)
    }

    /// Each session, to change; its client id is `entry.identity.client_id`.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.table.iter_mut().map(|e| &mut **e)
    }
}
