//! Fuzzes the `cloudtrail` parser (see harness.rs for the property checked).
#![no_main]

#[path = "harness.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;
use spoor_ingest::parse::SourceType;

fuzz_target!(|data: &[u8]| harness::check(SourceType::Cloudtrail, data));
