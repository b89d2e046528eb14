//! pai-resources' integration tests: the real SQLite store on temporary files.
mod suite;
