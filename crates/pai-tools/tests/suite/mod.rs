#![allow(clippy::unwrap_used, clippy::expect_used)]

mod builtin;
mod confinement;
mod current_time;
mod http_get;
mod http_get_gate;
mod list_dir;
mod mcp;
mod read_file;
mod search_files;
mod sqlite_query;
mod support;
mod write_file;
