//! The placement decision (regions nearest the client, then a machine within the first
//! region that can serve) for one request, as the number of machines grows: 35 regions,
//! 10 machines per app, 10 / 100 / 1,000 apps (100 to 10,000 machines). It should not
//! grow with the total.
//! Run: `cargo bench --bench placement`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgewake::config::Config;
use edgewake::geo::Location;
use edgewake::lifecycle::pick;
use edgewake::machines::registry::NewMachine;
use edgewake::machines::spec::MachineSpec;
use edgewake::machines::store::Store;
use edgewake::machines::{MachineState, Registry};
use edgewake::proxy::place::{self, Regions};
use serde_json::json;
use std::collections::HashSet;
use std::hint::black_box;

const MACHINES_PER_APP: usize = 10;

fn shipped_regions() -> Regions {
    let config = Config::parse(include_str!("../config/edgewake.toml")).expect("shipped config");
    assert_eq!(config.regions.len(), 35);
    Regions::new(&config.regions, &config.edge.region)
}

/// A registry of `apps` apps with machines spread over the regions, most stopped, some
/// started with requests in flight.
fn registry(dir: &std::path::Path, apps: usize) -> Registry {
    let config = Config::parse(include_str!("../config/edgewake.toml")).unwrap();
    let store = Store::open(&dir.join(format!("bench-{apps}.db"))).unwrap();
    let (registry, _) = Registry::load(store, "127.0.0.0/8".parse().unwrap()).unwrap();
    let service = json!({"image": "flyio/fastify-functions", "services": [{"internal_port": 8080, "ports": [{"port": 80}]}]});
    for a in 0..apps {
        registry.create_app(&format!("app-{a}"), "bench").unwrap();
        let app = registry.app(&format!("app-{a}")).unwrap();
        for m in 0..MACHINES_PER_APP {
            let region = config.regions[(a * 7 + m * 3) % config.regions.len()]
                .code
                .clone();
            let spec = MachineSpec::from_config(&service).unwrap();
            let new = NewMachine {
                name: None,
                region,
                config: service.clone(),
                spec,
                cordoned: false,
            };
            let machine = registry.create_machine(&app, new).unwrap();
            if m % 3 == 0 {
                registry.transition(&machine, MachineState::Started, None);
            }
        }
    }
    registry
}

fn placement(c: &mut Criterion) {
    let regions = shipped_regions();
    let dir = tempfile::tempdir().unwrap();
    let client = Some(Location {
        latitude: -33.9,
        longitude: 151.2,
    });
    let mut group = c.benchmark_group("place_and_pick");
    for apps in [10, 100, 1_000] {
        let registry = registry(dir.path(), apps);
        let app = registry.app("app-7").unwrap();
        let headers = http::HeaderMap::new();
        let none = HashSet::new();
        group.bench_function(BenchmarkId::from_parameter(apps * MACHINES_PER_APP), |b| {
            b.iter(|| {
                let plan = place::plan(&regions, black_box(client), &headers);
                let picked = pick::pick(&app, 80, &plan, &none, |_| false).unwrap();
                black_box(picked.action)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, placement);
criterion_main!(benches);
