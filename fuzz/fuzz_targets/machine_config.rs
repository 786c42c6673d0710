//! A machine's `config` as the API takes it (`MachineSpec::accept`: normalise Fly's
//! canonical fields, then read and check) on any JSON, and its `image` on the parsers
//! that read it (the record's `image_ref`; the sandbox's image references).
//!
//! Checked beyond "does not panic":
//! - accepting is idempotent: an accepted config, accepted again, is unchanged (so a
//!   machine read back and updated with its own config keeps it);
//! - an accepted config survives the state database (JSON text and back) and reads to
//!   the same spec there (`Registry::load` reads stored configs with `from_config`);
//! - a service always has its port, and a stop signal that was accepted can be sent;
//! - an image reference that parses prints back to itself.
#![no_main]

use edgewake::images::Reference;
use edgewake::machines::record::ImageRef;
use edgewake::machines::spec::MachineSpec;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|bytes: &[u8]| {
    let Ok(config) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let _ = MachineSpec::from_config(&config);
    let Ok((accepted, spec)) = MachineSpec::accept(config) else {
        return;
    };
    let (again, _) = MachineSpec::accept(accepted.clone()).expect("an accepted config");
    assert_eq!(again, accepted, "accepting twice changed the config");

    let text = serde_json::to_string(&accepted).expect("a Value serializes");
    let stored: Value = serde_json::from_str(&text).expect("our own JSON parses");
    assert_eq!(stored, accepted, "the config changed in the store");
    let reloaded = MachineSpec::from_config(&stored).expect("a stored config reads");
    assert_eq!(format!("{reloaded:?}"), format!("{spec:?}"));

    assert!(spec.services.iter().all(|s| s.internal_port != 0));
    assert_eq!(
        spec.stop_signal().is_some(),
        spec.stop_config.signal.is_some()
    );
    let _ = ImageRef::parse(&spec.image);
    if let Ok(reference) = Reference::parse(&spec.image) {
        let printed = reference.to_string();
        assert_eq!(
            Reference::parse(&printed).ok(),
            Some(reference),
            "{printed:?}"
        );
    }
});
