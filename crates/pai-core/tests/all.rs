//! The one integration-test binary of pai-core.

mod suite;
