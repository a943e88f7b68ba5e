//! Agent configuration (to be written).
