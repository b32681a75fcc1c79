//! Preset files: every built-in and shipped preset loads; broken files fail with a message that
//! names the file, the line and the key.

use std::path::{Path, PathBuf};

use reglab::presets::{self, load_preset_file, PresetError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad_presets")
        .join(name)
}

fn error_of(name: &str) -> PresetError {
    match load_preset_file(&fixture(name)) {
        Ok(_) => panic!("{name} should not load"),
        Err(e) => e,
    }
}

#[test]
fn every_preset_file_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let roadmap = path.file_name().is_some_and(|n| n == presets::ROADMAP_FILE);
        if path.extension().is_some_and(|x| x == "toml") && !roadmap {
            let p = load_preset_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!p.arms.is_empty() && !p.claim.is_empty());
            count += 1;
        }
    }
    assert!(count >= 1);
    // Every file in presets/ is also built in, so the binary works from any folder.
    assert_eq!(presets::load_all(&[]).unwrap().len(), count);
    // The preset folder itself loads as an extra folder: the roadmap in it is not a preset.
    assert_eq!(presets::load_all(&[dir]).unwrap().len(), count);
}

#[test]
fn misspelled_key_is_named_with_its_line() {
    let e = error_of("misspelled_key.toml");
    let text = e.to_string();
    assert!(text.contains("misspelled_key.toml"), "{text}");
    assert_eq!(e.line, Some(2), "{text}");
    assert_eq!(e.key.as_deref(), Some("titel"), "{text}");
    assert!(text.contains("unknown field"), "{text}");
}

#[test]
fn wrong_type_is_named_with_its_line() {
    let e = error_of("wrong_type.toml");
    let text = e.to_string();
    assert_eq!(e.line, Some(10), "{text}");
    assert_eq!(e.key.as_deref(), Some("year"), "{text}");
    assert!(text.contains("invalid type"), "{text}");
}

#[test]
fn missing_field_is_named() {
    let e = error_of("missing_field.toml");
    assert_eq!(e.key.as_deref(), Some("claim"), "{e}");
    assert!(e.to_string().contains("missing field"), "{e}");
}

#[test]
fn unknown_experiment_lists_the_known_ones() {
    let e = error_of("unknown_experiment.toml");
    let text = e.to_string();
    assert_eq!(e.line, Some(3), "{text}");
    assert_eq!(e.key.as_deref(), Some("experiment"), "{text}");
    assert!(
        text.contains("unknown experiment `sgd-stabilty`") && text.contains("sgd-stability"),
        "{text}"
    );
}

#[test]
fn parameters_are_validated_against_the_experiment() {
    let e = error_of("bad_param_type.toml");
    assert_eq!(e.key.as_deref(), Some("params.steps"), "{e}");
    assert_eq!(e.line, Some(14), "{e}");
    assert!(e.to_string().contains("must be an integer"), "{e}");

    let e = error_of("unknown_param.toml");
    assert_eq!(e.key.as_deref(), Some("params.stpes"), "{e}");
    assert!(e.to_string().contains("unknown parameter `stpes`"), "{e}");

    let e = error_of("out_of_range.toml");
    assert_eq!(e.key.as_deref(), Some("arms.params.eta"), "{e}");
    assert_eq!(e.line, Some(18), "{e}");
}

#[test]
fn user_preset_folder_adds_presets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/good_presets");
    let all = presets::load_all(&[dir]).unwrap();
    let tiny = all.iter().find(|p| p.id == "tiny").expect("tiny preset");
    assert_eq!(tiny.arms[0].params.f64("eta"), 0.1);
    assert_eq!(tiny.params.usize("steps"), 100);
    // A broken file in a user folder is an error naming it.
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad_presets");
    let e = presets::load_all(&[bad]).unwrap_err();
    assert!(e.file.to_string_lossy().ends_with(".toml"), "{e}");
}
