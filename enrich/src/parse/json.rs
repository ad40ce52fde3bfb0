//! Field access on a parsed record.
//!
//! Records are parsed with sonic-rs into its arena-backed `Value` (one
//! allocation per record, strings borrowed from it), then read in one pass per
//! object with [`object_fields!`].
//! Measured on the fixture WAF records this is about twice as fast as serde
//! derive through sonic-rs or serde_json (see `benches/benches/parse.rs`).

use std::borrow::Cow;

use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

/// Why a field could not be read.
pub(crate) enum FieldError {
    Missing(&'static str),
    Type(&'static str, &'static str),
}

/// The field `key`, unless absent or null.
pub(crate) fn get<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.get(key).filter(|x| !x.is_null())
}

/// A string field; other types read as absent.
pub(crate) fn str<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    get(v, key).and_then(|x| x.as_str())
}

/// A field as text: strings as they are, numbers and booleans printed, since
/// loggers are not consistent about quoting (Falco's `output_fields` least of all).
pub(crate) fn text(x: &Value) -> Option<Cow<'_, str>> {
    if let Some(s) = x.as_str() {
        return Some(Cow::Borrowed(s));
    }
    if let Some(b) = x.as_bool() {
        return Some(Cow::Borrowed(if b { "true" } else { "false" }));
    }
    x.as_number().map(|n| Cow::Owned(n.to_string()))
}

/// A field found in a one-pass read that must be present.
pub(crate) fn required<'v>(
    v: Option<&'v Value>,
    key: &'static str,
) -> Result<&'v Value, FieldError> {
    v.ok_or(FieldError::Missing(key))
}

/// A field found in a one-pass read that must be a string.
pub(crate) fn required_str<'v>(
    v: Option<&'v Value>,
    key: &'static str,
) -> Result<&'v str, FieldError> {
    required(v, key)?
        .as_str()
        .ok_or(FieldError::Type(key, "a string"))
}

/// A field found in a one-pass read that must be an integer.
pub(crate) fn required_i64(v: Option<&Value>, key: &'static str) -> Result<i64, FieldError> {
    required(v, key)?
        .as_i64()
        .ok_or(FieldError::Type(key, "an integer"))
}

/// An optional integer; a value of another type is an error.
pub(crate) fn opt_i64(v: Option<&Value>, key: &'static str) -> Result<Option<i64>, FieldError> {
    v.map(|x| x.as_i64().ok_or(FieldError::Type(key, "an integer")))
        .transpose()
}

/// An optional number; a value of another type is an error.
pub(crate) fn opt_f64(v: Option<&Value>, key: &'static str) -> Result<Option<f64>, FieldError> {
    v.map(|x| x.as_f64().ok_or(FieldError::Type(key, "a number")))
        .transpose()
}

/// The elements of an array value (none when absent or not an array).
pub(crate) fn elements(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(|x| x.as_array())
        .into_iter()
        .flat_map(|a| a.iter())
}

/// Declares a struct of the fields a parser reads from one JSON object and a
/// `read` that fills them in a single pass over the object's keys (looking
/// fields up one at a time rescans the keys for each). `value` fields keep
/// the raw value (absent when null); `str` fields keep strings only; `text`
/// fields keep strings, numbers and booleans as text (see [`text`]).
macro_rules! object_fields {
    (
        $(#[$meta:meta])*
        struct $name:ident {
            $( $field:ident : $kind:ident = $key:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Default)]
        struct $name<'v> {
            $( $field: $crate::parse::json::object_fields!(@type $kind), )+
        }

        impl<'v> $name<'v> {
            fn read(value: &'v sonic_rs::Value) -> $name<'v> {
                use sonic_rs::{JsonContainerTrait as _, JsonValueTrait as _};
                let mut fields = $name::default();
                let Some(object) = value.as_object() else {
                    return fields;
                };
                for (key, v) in object.iter() {
                    if v.is_null() {
                        continue;
                    }
                    match key {
                        $( $key => fields.$field = $crate::parse::json::object_fields!(@take $kind, v), )+
                        _ => {}
                    }
                }
                fields
            }
        }
    };
    (@type value) => { Option<&'v sonic_rs::Value> };
    (@type str) => { Option<&'v str> };
    (@type text) => { Option<std::borrow::Cow<'v, str>> };
    (@take value, $v:ident) => { Some($v) };
    (@take str, $v:ident) => { $v.as_str() };
    (@take text, $v:ident) => { $crate::parse::json::text($v) };
}

pub(crate) use object_fields;
