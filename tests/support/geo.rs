//! A City-layout geo database made for the test: address ranges placed in Sydney,
//! Paris and Amsterdam, so a client's region follows from its address.

use mmdb_writer::{Value, Writer};
use std::path::Path;

pub const SYDNEY: (f64, f64) = (-33.869, 151.209);
pub const PARIS: (f64, f64) = (48.857, 2.352);
pub const AMSTERDAM: (f64, f64) = (52.374, 4.890);

/// 127.1/16 and 203.0.113/24 in Sydney, 127.2/16 and 198.51.100/24 in Paris,
/// 192.0.2/24 in Amsterdam.
pub fn write_geo_db(path: &Path) {
    let city = |(lat, lon): (f64, f64)| {
        Value::map([(
            "location",
            Value::map([
                ("latitude", Value::Double(lat)),
                ("longitude", Value::Double(lon)),
            ]),
        )])
    };
    let mut writer = Writer::new("GeoIP2-City");
    for (net, at) in [
        ("127.1.0.0/16", SYDNEY),
        ("203.0.113.0/24", SYDNEY),
        ("127.2.0.0/16", PARIS),
        ("198.51.100.0/24", PARIS),
        ("192.0.2.0/24", AMSTERDAM),
    ] {
        writer
            .insert_value(net.parse::<mmdb_writer::ipnet::IpNet>().unwrap(), city(at))
            .unwrap();
    }
    std::fs::write(path, writer.to_bytes().unwrap()).unwrap();
}
