//! Shared checks for the cargo-fuzz targets: the same contracts as the proptest suites in
//! `common/tests/fuzz_*.rs` and `coordinator/tests/fuzz_state.rs`, driven by libFuzzer's
//! coverage-guided bytes instead of proptest's generators.

use std::fmt::{Debug, Display};

use serde::{de::DeserializeOwned, Serialize};
use sluice_common::names::InvalidValue;

#[cfg(feature = "state")]
pub mod state;

/// A text parser's contract: accepted text displays back to itself (when `exact`) or to
/// text that parses to the same value; serde agrees with `parse`.
pub fn text<T>(s: &str, parse: fn(&str) -> Result<T, InvalidValue>, exact: bool)
where
    T: Display + Debug + PartialEq + Serialize + DeserializeOwned,
{
    let parsed = parse(s);
    let via_serde = serde_json::from_value::<T>(serde_json::Value::String(s.to_string()));
    assert_eq!(parsed.is_ok(), via_serde.is_ok(), "{s:?}");
    if let Ok(v) = parsed {
        let shown = v.to_string();
        if exact {
            assert_eq!(shown, s);
        }
        assert_eq!(parse(&shown).expect("display re-parses"), v);
        assert_eq!(via_serde.unwrap(), v);
        let json = serde_json::to_string(&v).expect("serializes");
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v);
    }
}

/// A wire type's contract: bytes never panic; accepted bytes re-serialize to JSON that
/// deserializes to the same value and serializes identically.
pub fn wire<T>(data: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(t) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let out = serde_json::to_value(&t).expect("an accepted value serializes");
    let back: T = serde_json::from_value(out.clone()).expect("its serialization is accepted");
    assert_eq!(back, t);
    assert_eq!(serde_json::to_value(&back).unwrap(), out);
}
