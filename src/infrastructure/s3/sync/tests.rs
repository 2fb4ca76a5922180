//! Tests of pull and push together, on the in-memory store: two or more
//! caches of one prefix, faults injected by the store. `fixtures` builds
//! them; the other modules group the tests by what they test.

mod conflicts;
mod fixtures;
mod ownership;
mod pull;
mod push;
mod round_trip;
mod sharded;

pub(super) use fixtures::{fence, index, machine, one_machine, requests, write};
