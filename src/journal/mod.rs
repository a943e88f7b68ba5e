//! The crash-safe journal (to be written).
