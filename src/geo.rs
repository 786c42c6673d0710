//! Where a client is: MaxMind-format databases (GeoIP2/GeoLite2 City with
//! `location.latitude`, or DB-IP Lite with flat 32-bit `latitude`/`longitude`), and
//! great-circle distances between places.

use maxminddb::Reader;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A point on Earth, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
}

/// Mean Earth radius used for great-circle distances.
const EARTH_RADIUS_KM: f64 = 6371.0;

impl Location {
    /// Great-circle distance (haversine), in kilometres.
    pub fn distance_km(&self, other: &Location) -> f64 {
        let (lat1, lat2) = (self.latitude.to_radians(), other.latitude.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.longitude - self.longitude).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
    }
}

/// Both record layouts: City (`location.latitude`) and DB-IP Lite (flat fields).
#[derive(Debug, Deserialize)]
struct GeoRecord {
    location: Option<Coordinates>,
    latitude: Option<Degrees>,
    longitude: Option<Degrees>,
}

#[derive(Debug, Deserialize)]
struct Coordinates {
    latitude: Option<Degrees>,
    longitude: Option<Degrees>,
}

/// A coordinate stored as a double (MaxMind) or a 32-bit float (DB-IP Lite): the
/// reader insists on the stored type, so take whichever comes.
#[derive(Debug, Clone, Copy)]
struct Degrees(f64);

impl<'de> Deserialize<'de> for Degrees {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Degrees;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a coordinate in degrees")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Degrees, E> {
                Ok(Degrees(v))
            }
            fn visit_f32<E>(self, v: f32) -> Result<Degrees, E> {
                Ok(Degrees(f64::from(v)))
            }
        }
        de.deserialize_any(Visitor)
    }
}

impl GeoRecord {
    fn location(&self) -> Option<Location> {
        let nested = self
            .location
            .as_ref()
            .and_then(|l| Some((l.latitude?.0, l.longitude?.0)));
        let flat = self.latitude.zip(self.longitude).map(|(a, b)| (a.0, b.0));
        let (latitude, longitude) = nested.or(flat)?;
        Some(Location {
            latitude,
            longitude,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("geo database {path}: {message}")]
pub struct GeoError {
    path: PathBuf,
    message: String,
}

/// The geo databases: one file for IPv4 and one for IPv6, or one file for both.
#[derive(Default)]
pub struct GeoDb {
    v4: Option<Reader<Vec<u8>>>,
    v6: Option<Reader<Vec<u8>>>,
}

fn open(path: &Path) -> Result<Reader<Vec<u8>>, GeoError> {
    Reader::open_readfile(path).map_err(|e| GeoError {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

impl GeoDb {
    /// Opens the configured files; a file given for one family also serves the other
    /// when that one has none.
    pub fn open(v4: Option<&Path>, v6: Option<&Path>) -> Result<GeoDb, GeoError> {
        Ok(GeoDb {
            v4: v4.map(open).transpose()?,
            v6: v6.map(open).transpose()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }

    /// The client's location, if a database knows the address. IPv4-mapped IPv6
    /// addresses are looked up as IPv4.
    pub fn locate(&self, ip: IpAddr) -> Option<Location> {
        let ip = ip.to_canonical();
        let reader = match ip {
            IpAddr::V4(_) => self.v4.as_ref().or(self.v6.as_ref()),
            IpAddr::V6(_) => self.v6.as_ref().or(self.v4.as_ref()),
        }?;
        let record: GeoRecord = reader.lookup(ip).ok()?.decode().ok()??;
        record.location()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sydney to Paris is about 16,960 km; a place is 0 km from itself.
    #[test]
    fn great_circle_distances() {
        let sydney = Location {
            latitude: -33.869,
            longitude: 151.209,
        };
        let paris = Location {
            latitude: 48.857,
            longitude: 2.352,
        };
        let d = sydney.distance_km(&paris);
        assert!((16_900.0..17_050.0).contains(&d), "{d}");
        assert_eq!(paris.distance_km(&paris), 0.0);
    }

    /// Without databases, nobody is located.
    #[test]
    fn empty_db_locates_nothing() {
        let db = GeoDb::default();
        assert!(db.is_empty());
        assert_eq!(db.locate("81.2.69.160".parse().unwrap()), None);
    }
}
