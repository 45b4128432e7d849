//! Route helpers shared by the gateway tests (tests/gateway_nginx.rs, with stub
//! upstreams) and the real-pod tests (tests/real_workers.rs): included by `#[path]`.

/// A path an nginx location matches: the exact path, or below the prefix, or below the
/// literal of a `<literal>.*` or `^<literal>.*` regex.
pub fn sample_path(location: &str) -> String {
    let (modifier, pattern) = location.split_once(' ').unwrap_or(("", location));
    let prefix = match modifier {
        "=" => return pattern.to_string(),
        "~" | "~*" => pattern
            .strip_suffix(".*")
            .map(|literal| literal.strip_prefix('^').unwrap_or(literal))
            .filter(|literal| !literal.contains(['^', '$', '(', '[', '*', '+', '?', '\\']))
            .unwrap_or_else(|| panic!("cannot derive a path for the regex location {location}")),
        "" | "^~" => pattern,
        _ => panic!("unknown location modifier in {location}"),
    };
    if prefix.ends_with('/') {
        format!("{prefix}sample")
    } else {
        format!("{prefix}/sample")
    }
}
