//! The one versioned storage codec: every value a Sluice store writes (the agent's sled
//! trees, the coordinator's Raft log, vote and snapshots) is JSON inside an envelope that
//! names its format version, `{"v":1,"<field>":…}`.
//!
//! A reader refuses a version it does not know, loudly, instead of misreading it: a
//! downgraded binary, or a later layout that needs a migration, is then a clear error at
//! start rather than a silently wrong state. The name of the data field is the store's own
//! (`data` on the agent, `d` in the Raft store), fixed when each store first wrote its
//! files, so existing files decode byte for byte.
//!
//! Pure: bytes in, bytes out; the stores do the I/O.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A store's envelope: its current format version and the name of its data field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    version: u32,
    field: &'static str,
}

/// Why a stored value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Written by another format version than this build's.
    #[error("stored value has format version {found}; this build reads version {expected}")]
    Version {
        /// The version the value carries.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// Not an envelope of the expected shape (corrupt, truncated, or another type).
    #[error("stored value is malformed: {0}")]
    Json(#[from] serde_json::Error),
}

impl Codec {
    /// The envelope of format `version`, with the value under `field`.
    pub const fn new(version: u32, field: &'static str) -> Self {
        Self { version, field }
    }

    /// The format version this codec writes (and alone reads).
    pub const fn version(&self) -> u32 {
        self.version
    }

    /// `value` in its envelope.
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        Ok(serde_json::to_vec(&Envelope {
            version: self.version,
            field: self.field,
            data: value,
        })?)
    }

    /// [`Codec::encode`] into `out` (a large value need not be held twice).
    pub fn encode_to<T: Serialize + ?Sized, W: std::io::Write>(
        &self,
        out: W,
        value: &T,
    ) -> Result<(), CodecError> {
        Ok(serde_json::to_writer(
            out,
            &Envelope {
                version: self.version,
                field: self.field,
                data: value,
            },
        )?)
    }

    /// The value inside `bytes`, refusing any other format version before the value
    /// itself is read.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        #[derive(Deserialize)]
        struct Peek {
            v: u32,
        }
        let Peek { v } = serde_json::from_slice(bytes)?;
        if v != self.version {
            return Err(CodecError::Version {
                found: v,
                expected: self.version,
            });
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = DataOf::<T> {
            field: self.field,
            _t: PhantomData,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

/// The envelope as written: `v` first, then the data field.
struct Envelope<'a, T: ?Sized> {
    version: u32,
    field: &'static str,
    data: &'a T,
}

impl<T: Serialize + ?Sized> Serialize for Envelope<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Envelope", 2)?;
        st.serialize_field("v", &self.version)?;
        st.serialize_field(self.field, self.data)?;
        st.end()
    }
}

/// Reads the data field of an envelope (whose version was already checked), skipping the
/// rest.
struct DataOf<T> {
    field: &'static str,
    _t: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for DataOf<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for DataOf<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a versioned envelope with a `{}` field", self.field)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut data = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.field && data.is_none() {
                data = Some(map.next_value::<T>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        data.ok_or_else(|| serde::de::Error::missing_field(self.field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: Codec = Codec::new(1, "data");
    const RAFT: Codec = Codec::new(1, "d");

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        name: String,
        n: u64,
    }

    #[test]
    fn writes_the_version_first_then_the_stores_own_field() {
        assert_eq!(AGENT.encode(&7u64).unwrap(), br#"{"v":1,"data":7}"#);
        assert_eq!(RAFT.encode(&7u64).unwrap(), br#"{"v":1,"d":7}"#);
        let r = Rec {
            name: "a".into(),
            n: 2,
        };
        let bytes = RAFT.encode(&r).unwrap();
        assert_eq!(bytes, br#"{"v":1,"d":{"name":"a","n":2}}"#);
        assert_eq!(RAFT.decode::<Rec>(&bytes).unwrap(), r);
    }

    #[test]
    fn refuses_other_versions_before_reading_the_value() {
        // The value is not even a Rec: the version alone decides.
        let e = AGENT
            .decode::<Rec>(br#"{"v":2,"data":"whatever"}"#)
            .unwrap_err();
        assert!(matches!(
            e,
            CodecError::Version {
                found: 2,
                expected: 1
            }
        ));
        assert!(e.to_string().contains("format version 2"), "{e}");
        assert_eq!(AGENT.version(), 1);
    }

    #[test]
    fn refuses_malformed_envelopes() {
        for bad in [
            &b"not json"[..],
            br#"{"data":7}"#,
            br#"{"v":1}"#,
            br#"{"v":1,"d":7}"#,
            br#"{"v":1,"data":"seven"}"#,
            br#"{"v":1,"data":7} trailing"#,
        ] {
            let e = AGENT.decode::<u64>(bad).unwrap_err();
            assert!(matches!(e, CodecError::Json(_)), "{bad:?}: {e}");
        }
    }

    #[test]
    fn field_order_and_extra_fields_do_not_matter_on_read() {
        assert_eq!(AGENT.decode::<u64>(br#"{"data":7,"v":1}"#).unwrap(), 7);
        assert_eq!(
            AGENT
                .decode::<u64>(br#"{"v":1,"note":[1,2],"data":7}"#)
                .unwrap(),
            7
        );
    }
}
