//! Phase 2, place: the regions to try, nearest to the client first (great-circle
//! distance), adjusted by Fly's routing headers: `fly-force-region` (only these),
//! `fly-prefer-region` (these first), `fly-force-instance-id`, `fly-prefer-instance-id`.

use crate::config::RegionConfig;
use crate::geo::Location;
use crate::lifecycle::pick::Order;
use crate::lifecycle::{Pinned, Plan};
use dashmap::DashMap;
use http::{HeaderMap, HeaderName};

// The client's placement headers, named once: a lookup by `&str` parses the name again
// on every request.
static FLY_FORCE_REGION: HeaderName = HeaderName::from_static("fly-force-region");
static FLY_PREFER_REGION: HeaderName = HeaderName::from_static("fly-prefer-region");
static FLY_FORCE_INSTANCE_ID: HeaderName = HeaderName::from_static("fly-force-instance-id");
static FLY_PREFER_INSTANCE_ID: HeaderName = HeaderName::from_static("fly-prefer-instance-id");

/// Located clients are grouped in cells of this many degrees for the order cache.
const CELL_DEGREES: f64 = 0.1;
/// Most cells whose order is kept (a bound on memory, not on correctness).
const MAX_CACHED_CELLS: usize = 65_536;

/// The configured regions and where they are.
pub struct Regions {
    regions: Vec<(String, Location)>,
    edge: Location,
    /// Nearest-first from the edge itself: the order for clients nobody can locate.
    from_edge: Order,
    cache: DashMap<(i32, i32), Order>,
    /// `MAX_CACHED_CELLS` (smaller in tests).
    max_cached: usize,
}

impl Regions {
    pub fn new(config: &[RegionConfig], edge_region: &str) -> Regions {
        let regions: Vec<(String, Location)> = config
            .iter()
            .map(|r| {
                (
                    r.code.clone(),
                    Location {
                        latitude: r.latitude,
                        longitude: r.longitude,
                    },
                )
            })
            .collect();
        let origin = Location {
            latitude: 0.0,
            longitude: 0.0,
        };
        let edge = regions
            .iter()
            .find(|(code, _)| code == edge_region)
            .map_or(origin, |(_, l)| *l);
        let from_edge = by_distance(&regions, edge);
        Regions {
            regions,
            edge,
            from_edge,
            cache: DashMap::new(),
            max_cached: MAX_CACHED_CELLS,
        }
    }

    /// Region codes nearest to `client` first (the edge's own location when unknown).
    pub fn nearest_first(&self, client: Option<Location>) -> Order {
        let Some(at) = client.filter(|at| *at != self.edge) else {
            return self.from_edge.clone();
        };
        let cell = (
            (at.latitude / CELL_DEGREES) as i32,
            (at.longitude / CELL_DEGREES) as i32,
        );
        if let Some(order) = self.cache.get(&cell) {
            return order.clone();
        }
        let order = by_distance(&self.regions, at);
        if self.cache.len() < self.max_cached {
            self.cache.insert(cell, order.clone());
        }
        order
    }
}

fn by_distance(regions: &[(String, Location)], from: Location) -> Order {
    let mut ranked: Vec<(f64, &String)> = regions
        .iter()
        .map(|(code, at)| (from.distance_km(at), code))
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    ranked.into_iter().map(|(_, code)| code.clone()).collect()
}

fn header_list(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(|r| r.trim().to_ascii_lowercase())
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn header_value(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_ascii_lowercase())
}

/// The plan for a request from a client at `client`.
pub fn plan(regions: &Regions, client: Option<Location>, headers: &HeaderMap) -> Plan {
    let nearest = regions.nearest_first(client);
    let forced = header_list(headers, &FLY_FORCE_REGION);
    let pinned = match (
        header_value(headers, &FLY_FORCE_INSTANCE_ID),
        header_value(headers, &FLY_PREFER_INSTANCE_ID),
    ) {
        (Some(id), _) => Pinned::Force(id),
        (None, Some(id)) => Pinned::Prefer(id),
        (None, None) => Pinned::Any,
    };
    if !forced.is_empty() {
        let regions = nearest
            .iter()
            .filter(|r| forced.contains(r))
            .cloned()
            .collect();
        return Plan {
            regions,
            others_allowed: false,
            pinned,
            avoid: Vec::new(),
        };
    }
    let mut preferred = header_list(headers, &FLY_PREFER_REGION);
    preferred.retain(|r| nearest.contains(r));
    if preferred.is_empty() {
        return Plan {
            regions: nearest,
            others_allowed: true,
            pinned,
            avoid: Vec::new(),
        };
    }
    let rest = nearest
        .iter()
        .filter(|r| !preferred.contains(r))
        .cloned()
        .collect::<Vec<_>>();
    preferred.extend(rest);
    Plan {
        regions: preferred.into(),
        others_allowed: true,
        pinned,
        avoid: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Regions {
        let region = |code: &str, latitude, longitude| RegionConfig {
            code: code.into(),
            name: String::new(),
            latitude,
            longitude,
        };
        Regions::new(
            &[
                region("ams", 52.37, 4.89),
                region("syd", -33.87, 151.21),
                region("cdg", 48.86, 2.35),
                region("nrt", 35.69, 139.69),
            ],
            "ams",
        )
    }

    /// A client in Sydney gets syd, then Tokyo, then Europe (Amsterdam is nearer to
    /// Sydney than Paris on the great circle); an unknown client the edge's order.
    #[test]
    fn nearest_regions_first() {
        let sydney = Location {
            latitude: -33.9,
            longitude: 151.2,
        };
        assert_eq!(
            &regions().nearest_first(Some(sydney))[..],
            ["syd", "nrt", "ams", "cdg"]
        );
        assert_eq!(
            &regions().nearest_first(None)[..],
            ["ams", "cdg", "nrt", "syd"]
        );
    }

    /// Orders are kept per cell of a tenth of a degree in each direction, not coarser:
    /// clients at one longitude (and then at one latitude), each nearer its own region,
    /// keep their own orders when asked again and in turn on one `Regions`.
    #[test]
    fn nearby_clients_keep_their_own_order() {
        let regions = regions();
        let at = |latitude, longitude| {
            Some(Location {
                latitude,
                longitude,
            })
        };
        let pairs = [
            (at(51.9, 4.0), at(50.1, 4.0)), // one longitude: Amsterdam's, Paris's
            (at(50.6, 9.9), at(50.6, 1.0)), // one latitude
        ];
        for (near_ams, near_cdg) in pairs {
            for _ in 0..2 {
                assert_eq!(regions.nearest_first(near_ams)[0], "ams");
                assert_eq!(regions.nearest_first(near_cdg)[0], "cdg");
            }
        }
    }

    /// Clients from more cells than the cache holds are all placed, and the cache stops
    /// growing at its bound.
    #[test]
    fn the_order_cache_is_bounded() {
        let mut regions = regions();
        regions.max_cached = 8;
        for i in 0..20 {
            let at = Location {
                latitude: -33.0 + f64::from(i),
                longitude: 151.0,
            };
            assert_eq!(regions.nearest_first(Some(at))[0], "syd");
        }
        assert_eq!(regions.cache.len(), 8);
    }

    /// Preferred regions come first; forced regions are the only ones.
    #[test]
    fn routing_headers_shape_the_plan() {
        let mut headers = HeaderMap::new();
        headers.insert("fly-prefer-region", "SYD, nowhere".parse().unwrap());
        let plan = super::plan(&regions(), None, &headers);
        assert_eq!(&plan.regions[..], ["syd", "ams", "cdg", "nrt"]);
        assert!(plan.others_allowed);
        headers.insert("fly-force-region", "nrt,cdg".parse().unwrap());
        headers.insert("fly-force-instance-id", "ABC".parse().unwrap());
        let plan = super::plan(&regions(), None, &headers);
        assert_eq!(&plan.regions[..], ["cdg", "nrt"]);
        assert!(!plan.others_allowed);
        assert_eq!(plan.pinned, Pinned::Force("abc".into()));
    }
}
