//! The planner (to be written).
