//! Integration tests of the coordinator library, in one binary so it links once.

mod store_crash;
