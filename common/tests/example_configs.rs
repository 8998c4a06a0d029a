//! Every example configuration shipped in `deploy/config` loads and validates,
//! so the examples cannot rot.

use std::path::Path;

use spoor_common::config::Config;

#[test]
fn every_example_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/config exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = Config::load(Some(&path), Vec::new(), &[])
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(config.node.id > 0, "{}", path.display());
            loaded += 1;
        }
    }
    assert_eq!(
        loaded, 5,
        "standalone, coordinator, ingest, worker and query examples"
    );
}

#[test]
fn the_embedded_defaults_name_every_key() {
    // Every key of the effective config appears in the commented defaults file,
    // so the reference documentation in it is complete.
    let config = Config::load(None, Vec::new(), &[]).expect("defaults");
    let printed = config.to_toml();
    for line in printed.lines() {
        if let Some((key, _)) = line.split_once(" = ") {
            assert!(
                spoor_common::config::DEFAULT_CONFIG_TOML.contains(&format!("{key} =")),
                "key {key} is missing from default_config.toml"
            );
        }
    }
}
