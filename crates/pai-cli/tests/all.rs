//! The one integration-test binary of pai-cli.

mod suite;
