//! The one integration-test binary of pai-tools.

mod suite;
