//! Writes the CRDs generated from the Rust types to `crds/` (or the folder given).
//! `crdgen --check` fails when the files there differ from what the types generate.

use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds"));
    let mut drifted = false;
    for (file, yaml) in lgtm_operator::api::crd_manifests() {
        let path = dir.join(file);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                eprintln!("{} is out of date: run `make crds`", path.display());
                drifted = true;
            }
        } else if let Err(e) = std::fs::write(&path, yaml) {
            eprintln!("cannot write {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    if drifted {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
