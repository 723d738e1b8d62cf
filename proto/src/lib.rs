//! Wire contract.
