//! Writes the CRDs generated from the Rust types to `crds/` and to the Helm chart's
//! `crds/` (or to the folders given). `crdgen --check` fails when a file there differs
//! from what the types generate.

use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    let mut dirs: Vec<PathBuf> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    if dirs.is_empty() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        dirs = vec![root.join("crds"), root.join("charts/lgtm-operator/crds")];
    }
    let mut drifted = false;
    for (dir, (file, yaml)) in dirs.iter().flat_map(|dir| {
        lgtm_operator::api::crd_manifests()
            .into_iter()
            .map(move |m| (dir, m))
    }) {
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
