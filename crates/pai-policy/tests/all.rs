//! pai-policy's behaviour through its public API: layers, precedence, examples checked at
//! load, constraints, safe mode, path classes.

mod suite;
