//! Geo lookup reads both database layouts edgewake supports.

use edgewake::geo::{GeoDb, Location};
use mmdb_writer::{Value, Writer};
use std::path::Path;

fn near(found: Option<Location>, latitude: f64, longitude: f64) {
    let found = found.expect("the address is in the database");
    assert!((found.latitude - latitude).abs() < 0.01, "{found:?}");
    assert!((found.longitude - longitude).abs() < 0.01, "{found:?}");
}

/// MaxMind's GeoIP2 City test database gives coordinates (`location.latitude`), also
/// for the IPv4-mapped IPv6 form of an address.
#[test]
fn maxmind_city_layout() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/GeoIP2-City-Test.mmdb");
    let db = GeoDb::open(Some(&path), None).unwrap();
    near(db.locate("81.2.69.160".parse().unwrap()), 51.5142, -0.0931);
    near(
        db.locate("::ffff:81.2.69.160".parse().unwrap()),
        51.5142,
        -0.0931,
    );
    assert_eq!(
        db.locate("10.0.0.1".parse().unwrap()),
        None,
        "private addresses are unknown"
    );
}

/// A DB-IP Lite layout file (flat 32-bit `latitude`/`longitude`) gives coordinates;
/// separate IPv4 and IPv6 files each answer their own family.
#[test]
fn dbip_flat_layout_with_separate_families() {
    let dir = tempfile::tempdir().unwrap();
    let record = |lat: f32, lon: f32| {
        Value::map([
            ("city", Value::from("somewhere")),
            ("latitude", Value::Float(lat)),
            ("longitude", Value::Float(lon)),
        ])
    };
    let mut v4 = Writer::new("DBIP-City-Lite");
    v4.insert_value(
        "198.51.100.0/24"
            .parse::<mmdb_writer::ipnet::IpNet>()
            .unwrap(),
        record(-33.87, 151.21),
    )
    .unwrap();
    let mut v6 = Writer::new("DBIP-City-Lite");
    v6.insert_value(
        "2001:db8::/32"
            .parse::<mmdb_writer::ipnet::IpNet>()
            .unwrap(),
        record(48.86, 2.35),
    )
    .unwrap();
    let (p4, p6) = (dir.path().join("v4.mmdb"), dir.path().join("v6.mmdb"));
    std::fs::write(&p4, v4.to_bytes().unwrap()).unwrap();
    std::fs::write(&p6, v6.to_bytes().unwrap()).unwrap();

    let db = GeoDb::open(Some(&p4), Some(&p6)).unwrap();
    near(db.locate("198.51.100.7".parse().unwrap()), -33.87, 151.21);
    near(db.locate("2001:db8::1".parse().unwrap()), 48.86, 2.35);
    assert_eq!(db.locate("203.0.113.1".parse().unwrap()), None);
}
