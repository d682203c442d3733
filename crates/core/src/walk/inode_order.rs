//! Huge directories, changed in inode order a slice at a time.
//!
//! # Why inode order
//! A directory lists its entries in hash order (ext4's htree, xfs's btree), which scatters
//! them over the inode table. Every chown, chmod or label write dirties the inode table block
//! of its inode (16 inodes to a 4 KiB block on ext4), and the journal logs a dirty block
//! once per transaction. In hash order a block is dirtied again and again, in transaction
//! after transaction, until journal checkpoints throttle the whole pass; in inode order its
//! 16 inodes are changed one after the other, and the block is logged once.
//!
//! A directory that fits in one read buffer (the common case: up to about 30,000 entries)
//! is simply sorted by the worker that read it. A bigger one would be sorted only a buffer
//! at a time, each buffer a random sample of the whole, so every block would still be
//! dirtied once per buffer. Measured on one directory of 1,000,000 files (ext4 with a
//! 64 MiB journal, which such a pass outgrows; 2 threads): 10.0-11.7 s sorted a buffer at a
//! time, 5.1-5.3 s in inode order; `chgrp -R`, 9.5-10.8 s. With a journal big enough for the
//! whole pass, fewer logged blocks save commit work rather than checkpoint waits (not
//! re-measured there).
//!
//! # How, in bounded memory
//! Sorting a directory of millions of names whole would take tens of MiB. Instead the huge
//! directory is read as many times as it takes; each read (a *pass*) keeps the entries
//! whose inode numbers fall in the next range, at most [`SLICE_BYTES`] of them, narrowing
//! the range as it fills (about the highest quarter is let go, to a later pass). Ranges are
//! cut between inode numbers, which the container cannot change under a name; only a slice
//! of one inode's names (hard links, of which tmpfs and xfs allow millions) is cut by
//! place in the listing ([`Key`]). The kept entries (a [`Slice`]) are sorted and visited a piece
//! at a time by whichever workers are free, while the next pass reads. A pass that ends
//! before the slice before it is done waits, gathered, for the worker that finishes that
//! slice to hand it out ([`HugeDir`]): a huge directory holds two slices at most, one being
//! visited and one being gathered, and they reuse the same buffers pass after pass. One
//! huge directory at a time is read this way (the [`Allowance`]); another one found
//! meanwhile is read a buffer at a time, so memory stays bounded whatever the tree.
//!
//! Reading a directory again costs about 0.4 us an entry, a tenth of one chown, but every
//! pass reads all of it: the number of passes grows with the directory, and their cost
//! with its square. So a directory that would take more than [`MAX_PASSES`] is read in
//! passes no further than the first slice; the rest is read a buffer at a time.
//!
//! Passes only pay when most entries are written: with nothing to change, each entry costs
//! one `statx`, and reading the directory again and again would cost more than the order
//! saves. So the first [`PROBE`] entries of the listing are visited first, as a buffer's
//! are, and only if at least half of them needed a change is the rest read in passes
//! (which skip them by inode number and name: a place in the listing can move when names
//! come and go); otherwise it is read a buffer at a time. A volume whose group or label is being changed is changed everywhere; one that
//! is already right, nowhere.
//!
//! Subdirectories in a piece are queued to be opened once the piece is visited, above the
//! slice, so they are walked before its next piece, depth first, as a buffer's are.
//! Entries that appear while the passes run may be missed, as they may by any walk that
//! has already read past them.

use super::node::Dir;
use crate::sys::{DirEntry, EntryType};
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// How many entries of a huge directory are visited to decide whether to read the rest
/// in passes. Their writes, in listing order, cost a few hundred journal blocks.
pub(super) const PROBE: usize = 256;

/// The most a slice of a huge directory holds: 10 MiB of entries (436,906), 6 MiB of names.
/// A directory of 1,000,000 entries takes three reads.
pub(super) const SLICE_BYTES: usize = 16 << 20;

/// The most passes a huge directory is read in (see the module documentation).
pub(super) const MAX_PASSES: usize = 8;

/// How many entries of a slice one task visits: small enough that the last piece of a
/// slice does not keep the other workers waiting, large enough to cost nothing to queue.
const PIECE: usize = 4096;

/// Where an entry sorts in a huge directory: by inode number, then by its place in the
/// listing (`d_off`), so that the many names of one inode can still be cut between two
/// slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key {
    ino: u64,
    off: u64,
}

impl Key {
    pub const FIRST: Key = Key { ino: 0, off: 0 };

    /// The first key of inode number `ino`.
    fn of_ino(ino: u64) -> Key {
        Key { ino, off: 0 }
    }

    pub fn of(entry: &DirEntry<'_>) -> Key {
        Key {
            ino: entry.ino,
            off: entry.off,
        }
    }
}

/// The right to read one huge directory in inode order; a walk has one.
#[derive(Clone, Default)]
pub(super) struct Allowance(Arc<AtomicBool>);

impl Allowance {
    /// Takes the allowance for `dir`, whose `probed` entries have been visited, if no
    /// other huge directory holds it. It is given back when the last pass and slice of
    /// `dir` (and the rest read a buffer at a time, if any) are done.
    pub fn take<'r>(&self, dir: &Arc<Dir<'r>>, probed: Probed) -> Option<Arc<HugeDir<'r>>> {
        let taken = self.0.swap(true, Ordering::AcqRel);
        (!taken).then(|| {
            Arc::new(HugeDir {
                dir: dir.clone(),
                probed,
                handoff: Mutex::default(),
                allowance: self.clone(),
            })
        })
    }
}

/// A directory being read in inode order, shared by its pending pass and its slices.
pub(super) struct HugeDir<'r> {
    pub dir: Arc<Dir<'r>>,
    /// The entries visited before the passes, which the passes skip.
    pub probed: Probed,
    handoff: Mutex<Handoff>,
    allowance: Allowance,
}

/// The entries of a huge directory visited to decide on the passes: by inode number and
/// name, which identify an entry whatever else comes and goes in the directory.
pub(super) struct Probed(Vec<(u64, CString)>);

impl Probed {
    pub fn new<'b>(entries: impl Iterator<Item = DirEntry<'b>>) -> Probed {
        let mut probed: Vec<_> = entries.map(|e| (e.ino, e.name.to_owned())).collect();
        probed.sort_unstable();
        Probed(probed)
    }

    /// Whether `entry` was visited by the probe.
    pub fn contains(&self, entry: &DirEntry<'_>) -> bool {
        let at = self.0.partition_point(|(ino, _)| *ino < entry.ino);
        self.0[at..]
            .iter()
            .take_while(|(ino, _)| *ino == entry.ino)
            .any(|(_, name)| name.as_c_str() == entry.name)
    }
}

/// What is left of a huge directory after its first slice, when it would take too many
/// passes: the entries from `from` on, but for the probed ones, read a buffer at a time.
#[derive(Clone)]
pub(super) struct Rest<'r> {
    huge: Arc<HugeDir<'r>>,
    from: Key,
}

impl<'r> Rest<'r> {
    pub fn new(huge: Arc<HugeDir<'r>>, from: Key) -> Rest<'r> {
        Rest { huge, from }
    }

    pub fn wants(&self, entry: &DirEntry<'_>) -> bool {
        Key::of(entry) >= self.from && !self.huge.probed.contains(entry)
    }
}

/// Between the passes and the slices of a huge directory.
#[derive(Default)]
struct Handoff {
    /// A slice is out, not yet done.
    visiting: bool,
    /// A gathered slice waiting for it.
    waiting: Option<Gathered>,
    /// The buffers of the last slice done, emptied, for the next pass to gather into.
    spare: Option<Entries>,
}

impl<'r> HugeDir<'r> {
    fn handoff(&self) -> MutexGuard<'_, Handoff> {
        self.handoff.lock().expect("handoff lock")
    }

    /// Hands out a gathered slice now if no slice is out, or else when the slice that is
    /// out is done. Returns what to queue: the slice (if it has entries) and the next pass.
    pub fn deliver(self: &Arc<Self>, gathered: Gathered) -> Vec<Delivery<'r>> {
        let mut handoff = self.handoff();
        if handoff.visiting {
            handoff.waiting = Some(gathered);
            return Vec::new();
        }
        self.hand_out(&mut handoff, gathered)
    }

    fn hand_out(self: &Arc<Self>, handoff: &mut Handoff, gathered: Gathered) -> Vec<Delivery<'r>> {
        let Gathered { entries, next } = gathered;
        let mut out = Vec::new();
        if entries.slots.is_empty() {
            handoff.spare = Some(entries);
        } else {
            handoff.visiting = true;
            out.push(Delivery::Slice(Arc::new(Slice::new(self.clone(), entries))));
        }
        if let Some(from) = next {
            out.push(Delivery::Pass(self.clone(), from));
        }
        out
    }

    /// The slice that was out is done: its buffers become the spare, and the slice waiting
    /// for it, if any, is handed out.
    fn slice_done(self: &Arc<Self>, mut entries: Entries) -> Vec<Delivery<'r>> {
        entries.slots.clear();
        entries.names.clear();
        let mut handoff = self.handoff();
        handoff.visiting = false;
        handoff.spare = Some(entries);
        match handoff.waiting.take() {
            Some(gathered) => self.hand_out(&mut handoff, gathered),
            None => Vec::new(),
        }
    }
}

impl Drop for HugeDir<'_> {
    fn drop(&mut self) {
        self.allowance.0.store(false, Ordering::Release);
    }
}

/// What a huge directory asks the walker to queue.
pub(super) enum Delivery<'r> {
    /// A slice to visit, a piece at a time.
    Slice(Arc<Slice<'r>>),
    /// A pass to read the entries from this key on.
    Pass(Arc<HugeDir<'r>>, Key),
}

/// One kept entry: its key, where its name starts in the slice's names, its type.
#[derive(Clone, Copy)]
struct Slot {
    key: Key,
    name: u32,
    kind: EntryType,
}

/// The buffers of a slice.
#[derive(Default)]
struct Entries {
    slots: Vec<Slot>,
    /// The kept names, each with its NUL.
    names: Vec<u8>,
}

impl Entries {
    /// Buffers of `budget` bytes in all, 5/8 for the slots and 3/8 for the names (names
    /// are mostly shorter than a slot): they are never grown, and pages not reached are
    /// never made resident.
    fn with_budget(budget: usize) -> Entries {
        Entries {
            slots: Vec::with_capacity(budget / 8 * 5 / size_of::<Slot>()),
            names: Vec::with_capacity(budget / 8 * 3),
        }
    }

    /// Whether one more entry, with a name of `name_len` bytes, would grow a buffer.
    fn is_full(&self, name_len: usize) -> bool {
        self.slots.len() == self.slots.capacity()
            || self.names.len() + name_len > self.names.capacity()
    }
}

/// A pass's gathered entries, sorted, and where the next pass starts, if one is needed.
pub(super) struct Gathered {
    entries: Entries,
    next: Option<Key>,
}

/// The entries of one range of keys, gathered over one read of a huge directory.
pub(super) struct Gather {
    from: Key,
    /// The end of the range (exclusive); none until the gather first fills up.
    below: Option<Key>,
    /// Allocated once, to the budget; full when either buffer is.
    entries: Entries,
    /// How many entries were offered, in the range or not.
    offered: usize,
}

impl Gather {
    /// A gather of the entries of `huge` from `from` on, in the buffers of the last slice
    /// done if there is one.
    pub fn new(huge: &HugeDir<'_>, from: Key) -> Gather {
        let spare = huge.handoff().spare.take();
        Gather {
            entries: spare.unwrap_or_else(|| Entries::with_budget(SLICE_BYTES)),
            ..Gather::with_budget(from, 0)
        }
    }

    fn with_budget(from: Key, budget: usize) -> Gather {
        Gather {
            from,
            below: None,
            entries: Entries::with_budget(budget),
            offered: 0,
        }
    }

    fn in_range(&self, key: Key) -> bool {
        key >= self.from && self.below.is_none_or(|below| key < below)
    }

    /// Keeps the entry if its key is in the range; narrows the range when full.
    pub fn offer(&mut self, key: Key, name: &CStr, kind: EntryType) {
        self.offered += 1;
        if !self.in_range(key) {
            return;
        }
        let name = name.to_bytes_with_nul();
        if self.entries.is_full(name.len()) {
            self.narrow();
            if !self.in_range(key) {
                return;
            }
        }
        let names = &mut self.entries.names;
        let at = u32::try_from(names.len()).expect("a slice holds less than 4 GiB");
        self.entries.slots.push(Slot {
            key,
            name: at,
            kind,
        });
        names.extend_from_slice(name);
    }

    /// Lets about the highest quarter go to a later pass.
    fn narrow(&mut self) {
        // Keys are unique (no two names of a directory share a place in its listing), so
        // there is a cut above the lowest one whenever more than one entry is kept.
        let Some(cut) = self.cut() else {
            return;
        };
        self.below = Some(cut);
        // The slots are in the order their names were added, so each kept name moves down
        // over the names let go, in place: a copy would hold both at once.
        let Entries { slots, names } = &mut self.entries;
        let mut end = 0;
        slots.retain_mut(|slot| {
            if slot.key >= cut {
                return false;
            }
            let start = slot.name as usize;
            let len = name_at(names, slot.name).to_bytes_with_nul().len();
            names.copy_within(start..start + len, end);
            slot.name = end as u32;
            end += len;
            true
        });
        names.truncate(end);
    }

    /// The first key of an inode number about three quarters of the way up the kept ones
    /// (from a sample of a thousand: this runs each time the slice fills up), above the
    /// lowest; if every kept entry is a name of one inode, a key among them.
    fn cut(&self) -> Option<Key> {
        let keys = || self.entries.slots.iter().map(|s| s.key);
        let lowest = keys().min()?;
        let step = (self.entries.slots.len() / 1024).max(1);
        let mut sample: Vec<Key> = keys().step_by(step).collect();
        sample.sort_unstable();
        let upper = &sample[sample.len() * 3 / 4..];
        let above = |ino: u64| ino > lowest.ino;
        upper
            .iter()
            .map(|key| key.ino)
            .find(|&ino| above(ino))
            .or_else(|| keys().map(|key| key.ino).filter(|&ino| above(ino)).min())
            .map(Key::of_ino)
            .or_else(|| upper.iter().copied().find(|&key| key > lowest))
            .or_else(|| keys().filter(|&key| key > lowest).min())
    }

    /// Whether reading the rest of the directory would take more than [`MAX_PASSES`], as
    /// the first pass sees it: it read every entry, and kept a slice's worth.
    pub fn too_many_passes(&self) -> bool {
        self.below.is_some() && self.offered > self.entries.slots.len() * MAX_PASSES
    }

    /// The sorted slice, and where the next pass starts.
    pub fn finish(mut self) -> Gathered {
        self.entries.slots.sort_unstable_by_key(|s| s.key);
        Gathered {
            entries: self.entries,
            next: self.below,
        }
    }
}

impl Gathered {
    /// Where the next pass would start; none if this slice ends the directory.
    pub fn next(&self) -> Option<Key> {
        self.next
    }

    /// This slice, and no pass after it: the rest is left to another way of reading.
    pub fn last(mut self) -> Gathered {
        self.next = None;
        self
    }
}

/// The sorted entries of one range of a huge directory, visited a piece at a time.
pub(super) struct Slice<'r> {
    pub huge: Arc<HugeDir<'r>>,
    /// Handed back to the directory as soon as the last piece is done.
    entries: RwLock<Entries>,
    pieces: usize,
    taken: AtomicUsize,
    done: AtomicUsize,
}

impl<'r> Slice<'r> {
    fn new(huge: Arc<HugeDir<'r>>, entries: Entries) -> Slice<'r> {
        Slice {
            huge,
            pieces: entries.slots.len().div_ceil(PIECE),
            entries: RwLock::new(entries),
            taken: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }

    /// Takes the next piece: `None` if every piece has been taken, else whether pieces
    /// remain after it.
    pub fn take_piece(&self) -> Option<Piece> {
        let index = self.taken.fetch_add(1, Ordering::Relaxed);
        (index < self.pieces).then_some(Piece {
            index,
            more: index + 1 < self.pieces,
        })
    }

    /// Calls `visit` on each entry of `piece` (name and type) in key order, while it
    /// returns `true`; then marks the piece done. Returns what the directory asks to queue
    /// when that was the slice's last piece.
    pub fn visit_piece(
        &self,
        piece: &Piece,
        mut visit: impl FnMut(&CStr, EntryType) -> bool,
    ) -> Vec<Delivery<'r>> {
        let entries = self.entries.read().expect("slice lock");
        let end = ((piece.index + 1) * PIECE).min(entries.slots.len());
        for slot in &entries.slots[piece.index * PIECE..end] {
            if !visit(name_at(&entries.names, slot.name), slot.kind) {
                break;
            }
        }
        drop(entries);
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 < self.pieces {
            return Vec::new();
        }
        let entries = std::mem::take(&mut *self.entries.write().expect("slice lock"));
        self.huge.slice_done(entries)
    }
}

/// A piece of a slice taken by a worker.
pub(super) struct Piece {
    index: usize,
    /// Whether pieces remain to be taken after this one.
    pub more: bool,
}

fn name_at(names: &[u8], at: u32) -> &CStr {
    CStr::from_bytes_until_nul(&names[at as usize..]).expect("names are stored with their NUL")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn huge() -> Arc<HugeDir<'static>> {
        // The descriptor is never used: these tests only gather and sort.
        let fd = rustix::fs::CWD;
        Allowance::default()
            .take(&Dir::root(fd), nothing_probed())
            .unwrap()
    }

    fn nothing_probed() -> Probed {
        Probed(Vec::new())
    }

    /// Whether the gather still holds its first buffers: it never grows them.
    fn within_budget(gather: &Gather, budget: usize) -> bool {
        let slots = gather.entries.slots.capacity() * size_of::<Slot>();
        slots + gather.entries.names.capacity() <= budget
    }

    fn key(ino: u64, off: u64) -> Key {
        Key { ino, off }
    }

    /// Offers entries named after their inode number, each at its own place in the listing.
    fn offer_all(gather: &mut Gather, inos: impl IntoIterator<Item = u64>) {
        for (off, ino) in inos.into_iter().enumerate() {
            let name = std::ffi::CString::new(format!("n{ino}")).unwrap();
            gather.offer(key(ino, off as u64), &name, EntryType::Other);
        }
    }

    /// Hands the gathered slice out and visits it all, a piece at a time.
    fn visit_all(gathered: Gathered) -> (Vec<String>, Vec<Delivery<'static>>) {
        let huge = huge();
        let mut out = huge.deliver(gathered);
        let mut names = Vec::new();
        let mut after = Vec::new();
        while let Some(delivery) = out.pop() {
            match delivery {
                Delivery::Slice(slice) => {
                    while let Some(piece) = slice.take_piece() {
                        out.extend(slice.visit_piece(&piece, |name, _| {
                            names.push(name.to_str().unwrap().to_owned());
                            true
                        }));
                    }
                }
                pass => after.push(pass),
            }
        }
        (names, after)
    }

    fn next_pass(after: &[Delivery<'_>]) -> Option<Key> {
        after.iter().find_map(|d| match d {
            Delivery::Pass(_, from) => Some(*from),
            Delivery::Slice(_) => None,
        })
    }

    #[test]
    fn a_directory_within_the_budget_is_one_sorted_slice() {
        let mut gather = Gather::with_budget(Key::FIRST, 1 << 20);
        offer_all(&mut gather, [30, 10, 20]);
        let (names, after) = visit_all(gather.finish());
        assert_eq!(names, ["n10", "n20", "n30"]);
        assert!(after.is_empty());
    }

    #[test]
    fn passes_over_a_big_directory_see_every_entry_once_in_order() {
        // A hash-ordered listing: the inode numbers 1..=1000, shuffled.
        let listing: Vec<u64> = (1..=1000u64).map(|i| (i * 617) % 1000 + 1).collect();
        let budget = 100 * (size_of::<Slot>() + 6);
        let (mut from, mut seen, mut passes) = (Key::FIRST, Vec::new(), 0);
        loop {
            let mut gather = Gather::with_budget(from, budget);
            offer_all(&mut gather, listing.iter().copied());
            assert!(within_budget(&gather, budget));
            let (names, after) = visit_all(gather.finish());
            seen.extend(names);
            passes += 1;
            match next_pass(&after) {
                Some(cut) => from = cut,
                None => break,
            }
        }
        let expected: Vec<String> = (1..=1000).map(|i| format!("n{i}")).collect();
        assert_eq!(seen, expected);
        // Up to 3,000 bytes, 5/8 of them for 24-byte slots: 78 entries, 58 to 78 kept.
        assert!((13..=18).contains(&passes), "{passes} passes");
    }

    #[test]
    fn the_names_of_one_inode_are_cut_by_their_place_in_the_listing() {
        // 1,000 hard links to one inode: the budget still holds.
        let budget = 100 * (size_of::<Slot>() + 3);
        let mut gather = Gather::with_budget(Key::FIRST, budget);
        offer_all(&mut gather, [7; 1000]);
        assert!(within_budget(&gather, budget));
        assert!(gather.too_many_passes());
        let (names, after) = visit_all(gather.finish());
        assert!((40..=70).contains(&names.len()), "{} kept", names.len());
        let cut = next_pass(&after).unwrap();
        assert_eq!((cut.ino, cut.off), (7, names.len() as u64));
    }

    #[test]
    fn ranges_are_cut_between_inode_numbers() {
        // Two names for each inode: a cut never separates them, whatever their places.
        let budget = 40 * (size_of::<Slot>() + 5);
        let mut gather = Gather::with_budget(Key::FIRST, budget);
        offer_all(&mut gather, (1..=100u64).flat_map(|i| [i, i]));
        let (names, after) = visit_all(gather.finish());
        let cut = next_pass(&after).unwrap();
        assert_eq!(cut.off, 0);
        assert_eq!(names.len() as u64, 2 * (cut.ino - 1));
    }

    #[test]
    fn probed_entries_are_known_by_inode_and_name() {
        let entry = |ino, name: &'static CStr| DirEntry {
            ino,
            off: 0,
            name,
            kind: EntryType::Other,
        };
        let probed = Probed::new([entry(5, c"a"), entry(3, c"b")].into_iter());
        assert!(probed.contains(&entry(5, c"a")));
        assert!(probed.contains(&entry(3, c"b")));
        assert!(
            !probed.contains(&entry(5, c"c")),
            "another name of a probed inode"
        );
        assert!(
            !probed.contains(&entry(4, c"a")),
            "a probed name, now another inode"
        );
    }

    #[test]
    fn a_slice_waits_for_the_one_out_before_it() {
        let huge = huge();
        let mut first = Gather::with_budget(Key::FIRST, 1 << 20);
        offer_all(&mut first, 0..(PIECE as u64 + 1));
        let mut out = huge.deliver(first.finish());
        let Some(Delivery::Slice(slice)) = out.pop() else {
            panic!("the first slice is handed out at once");
        };
        let one = slice.take_piece().unwrap();
        assert!(one.more);
        let two = slice.take_piece().unwrap();
        assert!(!two.more);
        assert!(slice.take_piece().is_none());

        let mut second = Gather::with_budget(key(1 << 20, 0), 1 << 20);
        offer_all(&mut second, [1 << 21]);
        assert!(huge.deliver(second.finish()).is_empty(), "it waits");
        assert!(slice.visit_piece(&one, |_, _| true).is_empty());
        let out = slice.visit_piece(&two, |_, _| true);
        assert!(matches!(out.as_slice(), [Delivery::Slice(_)]), "handed out");
        assert!(
            huge.handoff().spare.is_some(),
            "the first slice's buffers are kept"
        );
    }

    #[test]
    fn the_allowance_is_held_until_the_huge_directory_is_done() {
        let allowance = Allowance::default();
        let dir = Dir::root(rustix::fs::CWD);
        let first = allowance.take(&dir, nothing_probed()).unwrap();
        assert!(allowance.take(&dir, nothing_probed()).is_none());
        drop(first);
        assert!(allowance.take(&dir, nothing_probed()).is_some());
    }
}
