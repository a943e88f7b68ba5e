//! Desired state (to be written).
