//! The one integration-test binary of pai-providers.

mod suite;
