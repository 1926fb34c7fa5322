//! Socket rules (filled in below).
