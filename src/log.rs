//! logfmt logging (to be written).
