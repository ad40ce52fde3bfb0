//! Decoding of MMDB records in one pass for both layouts seclake reads: the
//! nested MaxMind GeoIP2/GeoLite2 layout (`country.iso_code`,
//! `city.names.en`, `location.latitude`, `autonomous_system_number`) and the
//! flat ip-location-db layout (`country_code`, `city`, `latitude`, ...).
//!
//! Leaf values are lenient (a field of an unexpected type reads as absent);
//! nested maps must be maps, so a record of another shape fails to decode.

use std::fmt;
use std::io::Write as _;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::countries::country_name;

/// The fields seclake uses from any supported record layout.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Record<'a> {
    #[serde(borrow)]
    country: Option<Place<'a>>,
    #[serde(borrow)]
    city: Option<CityField<'a>>,
    #[serde(borrow)]
    location: Option<Location<'a>>,
    #[serde(borrow)]
    country_code: Option<Leaf<'a>>,
    #[serde(borrow)]
    latitude: Option<Leaf<'a>>,
    #[serde(borrow)]
    longitude: Option<Leaf<'a>>,
    #[serde(borrow)]
    autonomous_system_number: Option<Leaf<'a>>,
    #[serde(borrow)]
    autonomous_system_organization: Option<Leaf<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Place<'a> {
    #[serde(borrow)]
    iso_code: Option<Leaf<'a>>,
    #[serde(borrow)]
    names: Option<Names<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Names<'a> {
    #[serde(borrow)]
    en: Option<Leaf<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Location<'a> {
    #[serde(borrow)]
    latitude: Option<Leaf<'a>>,
    #[serde(borrow)]
    longitude: Option<Leaf<'a>>,
}

impl<'a> Record<'a> {
    /// ISO 3166-1 alpha-2 code of the country the address is located in.
    pub(crate) fn country_iso(&self) -> Option<&'a str> {
        self.country
            .as_ref()
            .and_then(|c| text(&c.iso_code))
            .or_else(|| text(&self.country_code))
    }

    /// English country name: `country.names.en`, else the built-in table
    /// entry for the record's ISO code.
    pub(crate) fn country_name(&self) -> Option<&'a str> {
        self.country
            .as_ref()
            .and_then(|c| c.names.as_ref())
            .and_then(|n| text(&n.en))
            .or_else(|| self.country_iso().and_then(country_name))
    }

    /// English city name (`city.names.en`, or the flat `city` string).
    pub(crate) fn city(&self) -> Option<&'a str> {
        self.city.as_ref().and_then(|c| c.0)
    }

    /// Latitude and longitude, only when both are present and in range.
    pub(crate) fn lat_lon(&self) -> Option<(f64, f64)> {
        let (lat, lon) = match &self.location {
            Some(loc) if loc.latitude.is_some() => (&loc.latitude, &loc.longitude),
            _ => (&self.latitude, &self.longitude),
        };
        let lat = lat.as_ref().and_then(Leaf::as_f64)?;
        let lon = lon.as_ref().and_then(Leaf::as_f64)?;
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
    }

    /// Autonomous system number; AS0 ("no AS", RFC 7607) reads as absent.
    pub(crate) fn asn(&self) -> Option<u32> {
        self.autonomous_system_number
            .as_ref()
            .and_then(Leaf::as_u32)
            .filter(|&n| n != 0)
    }

    /// Autonomous system organisation.
    pub(crate) fn as_org(&self) -> Option<&'a str> {
        text(&self.autonomous_system_organization)
    }

    /// Whether the record has any location field seclake uses.
    pub(crate) fn has_location(&self) -> bool {
        self.country_iso().is_some()
            || self.country_name().is_some()
            || self.city().is_some()
            || self.lat_lon().is_some()
    }

    /// Whether the record has an AS number.
    pub(crate) fn has_asn(&self) -> bool {
        self.asn().is_some()
    }
}

fn text<'a>(leaf: &Option<Leaf<'a>>) -> Option<&'a str> {
    leaf.as_ref().and_then(Leaf::as_str)
}

/// A scalar of any MMDB type; containers and unsupported types read as
/// [`Leaf::Other`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) enum Leaf<'a> {
    #[default]
    Other,
    Str(&'a str),
    Num(f64),
    UInt(u64),
}

impl<'a> Leaf<'a> {
    pub(crate) fn as_str(&self) -> Option<&'a str> {
        match *self {
            Leaf::Str(s) => Some(s.trim()).filter(|s| !s.is_empty()),
            _ => None,
        }
    }

    pub(crate) fn as_f64(&self) -> Option<f64> {
        let v = match *self {
            Leaf::Num(v) => v,
            Leaf::UInt(v) => v as f64,
            Leaf::Str(s) => s.trim().parse().ok()?,
            Leaf::Other => return None,
        };
        v.is_finite().then_some(v)
    }

    pub(crate) fn as_u32(&self) -> Option<u32> {
        match *self {
            Leaf::UInt(v) => u32::try_from(v).ok(),
            Leaf::Num(v) if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) => {
                Some(v as u32)
            }
            Leaf::Str(s) => {
                let s = s.trim();
                let digits = match s.get(..2) {
                    Some(p) if p.eq_ignore_ascii_case("as") => &s[2..],
                    _ => s,
                };
                digits.parse().ok()
            }
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Leaf<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LeafVisitor(PhantomData))
    }
}

struct LeafVisitor<'a>(PhantomData<&'a str>);

impl<'de: 'a, 'a> Visitor<'de> for LeafVisitor<'a> {
    type Value = Leaf<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any MMDB value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Leaf::Str(v))
    }

    // The MMDB decoder lends every string from the file; a transient one
    // cannot outlive this call, so it reads as absent.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Leaf::Other)
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
        Ok(Leaf::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Leaf::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Leaf::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Leaf::Other)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Leaf::UInt(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Leaf::Other, Leaf::UInt))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Leaf::Num(v as f64), Leaf::UInt))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Leaf::Num(v))
    }

    fn visit_f32<E: de::Error>(self, v: f32) -> Result<Self::Value, E> {
        Ok(Leaf::Num(widen_f32(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Leaf::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Leaf::Other)
    }
}

/// Widens an `f32` to the `f64` of its shortest decimal form, so a flat
/// record's `51.4036f32` reads as `51.4036`, not `51.40359878540039`.
pub(crate) fn widen_f32(v: f32) -> f64 {
    let mut buf = [0u8; 64];
    let mut out = &mut buf[..];
    if write!(out, "{v}").is_err() {
        return f64::from(v);
    }
    let len = 64 - out.len();
    std::str::from_utf8(&buf[..len])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::from(v))
}

/// `city` is a map with `names` in MaxMind databases and a plain string in
/// flat ones; both read as the English name.
#[derive(Debug, Default)]
struct CityField<'a>(Option<&'a str>);

impl<'de: 'a, 'a> Deserialize<'de> for CityField<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CityVisitor(PhantomData))
    }
}

struct CityVisitor<'a>(PhantomData<&'a str>);

impl<'de: 'a, 'a> Visitor<'de> for CityVisitor<'a> {
    type Value = CityField<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a city name or a map with `names`")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(CityField(Leaf::Str(v).as_str()))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(CityField(None))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
        Ok(CityField(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(CityField(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(CityField(None))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
        Ok(CityField(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(CityField(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(CityField(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(CityField(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(CityField(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut name = None;
        while let Some(key) = map.next_key::<Leaf<'a>>()? {
            if key == Leaf::Str("names") {
                name = map
                    .next_value::<Names<'a>>()?
                    .en
                    .as_ref()
                    .and_then(Leaf::as_str);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(CityField(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widen_f32_keeps_the_written_decimal() {
        assert_eq!(widen_f32(51.4036), 51.4036);
        assert_eq!(widen_f32(-0.7618), -0.7618);
        assert_eq!(widen_f32(139.69), 139.69);
        assert_eq!(widen_f32(0.0), 0.0);
        assert_eq!(widen_f32(f32::MAX), 3.4028235e38);
        assert_eq!(widen_f32(-f32::MIN_POSITIVE), -1.1754944e-38);
        assert!(widen_f32(f32::NAN).is_nan());
        assert_eq!(widen_f32(f32::INFINITY), f64::INFINITY);
    }

    #[test]
    fn leaf_conversions() {
        assert_eq!(Leaf::Str(" GB ").as_str(), Some("GB"));
        assert_eq!(Leaf::Str("").as_str(), None);
        assert_eq!(Leaf::UInt(7).as_str(), None);
        assert_eq!(Leaf::Str("AS29518").as_u32(), Some(29518));
        assert_eq!(Leaf::Str("as1").as_u32(), Some(1));
        assert_eq!(Leaf::Str("x").as_u32(), None);
        assert_eq!(Leaf::UInt(u64::from(u32::MAX) + 1).as_u32(), None);
        assert_eq!(Leaf::Num(12.0).as_u32(), Some(12));
        assert_eq!(Leaf::Num(12.5).as_u32(), None);
        assert_eq!(Leaf::Str("51.5").as_f64(), Some(51.5));
        assert_eq!(Leaf::Num(f64::NAN).as_f64(), None);
        assert_eq!(Leaf::Other.as_f64(), None);
    }

    fn flat<'a>(code: &'a str, city: &'a str, lat: f64, lon: f64) -> Record<'a> {
        Record {
            country_code: Some(Leaf::Str(code)),
            city: Some(CityField(Leaf::Str(city).as_str())),
            latitude: Some(Leaf::Num(lat)),
            longitude: Some(Leaf::Num(lon)),
            ..Record::default()
        }
    }

    #[test]
    fn flat_record_mapping() {
        let r = flat("GB", "Bracknell", 51.4036, -0.7618);
        assert_eq!(r.country_iso(), Some("GB"));
        assert_eq!(r.country_name(), Some("United Kingdom"));
        assert_eq!(r.city(), Some("Bracknell"));
        assert_eq!(r.lat_lon(), Some((51.4036, -0.7618)));
        assert!(r.has_location());
        assert!(!r.has_asn());

        let r = flat("US", "", 37.751, -97.822);
        assert_eq!(r.city(), None);
        assert_eq!(r.country_name(), Some("United States"));

        let r = flat("ZZ", "", 91.0, 0.0);
        assert_eq!(r.country_name(), None);
        assert_eq!(r.lat_lon(), None);
    }

    #[test]
    fn maxmind_record_mapping() {
        let r = Record {
            country: Some(Place {
                iso_code: Some(Leaf::Str("JP")),
                names: Some(Names {
                    en: Some(Leaf::Str("Japan")),
                }),
            }),
            location: Some(Location {
                latitude: Some(Leaf::Num(35.68536)),
                longitude: Some(Leaf::Num(139.75309)),
            }),
            autonomous_system_number: Some(Leaf::UInt(0)),
            ..Record::default()
        };
        assert_eq!(r.country_iso(), Some("JP"));
        assert_eq!(r.country_name(), Some("Japan"));
        assert_eq!(r.city(), None);
        assert_eq!(r.lat_lon(), Some((35.68536, 139.75309)));
        assert_eq!(r.asn(), None);
    }
}
