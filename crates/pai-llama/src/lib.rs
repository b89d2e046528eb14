//! The in-process model's own decoder: llama-architecture GGUF files run in the weights'
//! shipped block layouts (Q4_0, Q4_1, Q8_0) with AVX2 kernels chosen at run time.
//!
//! A crate of its own, and not a module of pai-providers, for build time: these kernels
//! are unusably slow unoptimised, so the dev profile compiles this crate at `opt-level = 3`
//! (as it does candle), while pai-providers, which changes often, stays quick to build.

mod kernels;
mod llama;

pub use llama::Llama;
