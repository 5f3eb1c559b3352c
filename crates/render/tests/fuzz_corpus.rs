//! Replays the fuzzing seeds and the committed corpus (fuzz/corpus/<target>/) through the same
//! oracles as the cargo-fuzz targets: the short CI run of the fuzzing, no nightly needed.

use std::path::PathBuf;

use gateway_render::oracle;

const TARGETS: [&str; 4] = ["task", "static_routes", "routes_json", "operator_bodies"];

#[test]
fn seeds_and_corpus_pass_the_oracles() {
    let mut runs = 0;
    for (target, data) in oracle::seeds() {
        oracle::run(target, &data);
        runs += 1;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    if std::env::var_os("FUZZ_WRITE_SEEDS").is_some() {
        // scripts/fuzz.sh: start each target's corpus from the seeds.
        for (i, (target, data)) in oracle::seeds().into_iter().enumerate() {
            std::fs::create_dir_all(root.join(target)).unwrap();
            std::fs::write(root.join(target).join(format!("seed-{i}")), data).unwrap();
        }
    }
    for target in TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else { continue };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap();
            oracle::run(target, &data);
            runs += 1;
        }
    }
    assert!(runs >= TARGETS.len(), "{runs} inputs replayed");
}

/// Hostile bytes the oracles must survive (and refuse), whatever the fuzzer finds.
#[test]
fn hostile_inputs_pass_the_oracles() {
    let hostile: [&[u8]; 6] = [
        br#"{"id": "t;1", "status": "in_progress", "system_tags": ["external_service"], "runtime": {"_SERVICE": "EXTERNAL", "_ADDRESS": "10.0.0.1\n", "_PORT": 80}}"#,
        br#"{"routes": [{"name": "a", "path": "/a;evil", "access": "public", "targets": ["10.0.0.1:80"]}]}"#,
        br#"{"version": "v1", "routes": {"x\"}": {"host": "1.2.3.4", "port": 1, "task": "t"}}}"#,
        br#"{"kind": "user", "label": "a\u0000b", "user": "u", "expires_in_seconds": 600}"#,
        b"\x01routes: [ {name: '$x', subdomain: 'a{b', access: public} ]",
        b"\xff\xfe",
    ];
    for data in hostile {
        for target in TARGETS {
            oracle::run(target, data);
        }
    }
}
