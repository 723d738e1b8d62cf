//! Secure aggregation.
