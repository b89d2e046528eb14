//! The one integration-test binary of pai-core.

// Tests run `pai` (or python3, or themselves) as child processes: that is how they drive
// the real binary, not a path out of a user's session, so the egress lint is off here.
#![allow(clippy::disallowed_methods)]

mod suite;
