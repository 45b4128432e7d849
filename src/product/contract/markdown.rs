//! `docs/runtime-contract.md`, generated from the contracts so that the document and the
//! data the tests enforce cannot disagree.

use std::fmt::Write as _;

use super::{Combinations, Contract, Fact, of};
use crate::product::Product;

/// The whole document.
pub fn markdown() -> String {
    let mut out = String::from(
        "<!-- Generated from src/product/contract/ by `make docs`; edit the data, not this file. -->\n\
         # The products' run-time contract\n\n\
         What Mimir, Loki and Tempo do at run time, at the versions the operator pins, read from\n\
         each product's source at its tag (the products are AGPL and are never built or run\n\
         here). Every line names the file and line it was read from. The operator renders pods\n\
         and configurations that honour it; the unit tests `render::contract_tests` check every\n\
         rendered pod of every pool shape against it (writable mounts, temp dir, environment,\n\
         nested timeouts, grace periods), the real API server checks that admission refuses\n\
         exactly the combinations it refuses, and a test fails when a pinned version changes\n\
         without a new read.\n\n\
         References are `path@tag:line` in the product's repository unless they name another\n\
         source (dskit, a chart, Go's standard library).\n",
    );
    for product in Product::ALL {
        section(&mut out, product, of(product));
    }
    out
}

fn cite(fact: &Fact) -> String {
    format!("{} ({})", fact.what, code(fact.reference))
}

fn code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'"))
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn roles(roles: &[&str]) -> String {
    if roles.is_empty() {
        "every role".into()
    } else {
        roles.join(", ")
    }
}

fn section(out: &mut String, product: Product, c: &Contract) {
    let w = out;
    let _ = writeln!(w, "\n## {} {}\n", title(product), c.version);
    let _ = writeln!(w, "Read at {}.", c.source);
    for source in c.other_sources {
        let _ = writeln!(w, "Also: {source}.");
    }
    let _ = writeln!(
        w,
        "\n**Image.** Working directory `{}`; {}.\n",
        c.image.workdir,
        cite(&c.image.user)
    );
    let _ = writeln!(w, "**Role combinations in one process.**");
    match &c.combinations {
        Combinations::ExactlyOne(why) => {
            let _ = writeln!(w, "Exactly one role toggle per pool: {}.\n", cite(why));
        }
        Combinations::AnyBut(refused) => {
            let _ = writeln!(w, "Any set of role toggles, except:\n");
            for r in *refused {
                let _ = writeln!(w, "- `{}`: {}.", r.toggle, cite(&r.why));
            }
            let _ = writeln!(w);
        }
    }

    let _ = writeln!(w, "**Paths written.**\n");
    let _ = writeln!(
        w,
        "| key | default | roles | kept across restarts | what | reference |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    for write in c.writes {
        let _ = writeln!(
            w,
            "| `{}` | {} | {} | {} | {} | {} |",
            write.key,
            if write.default.is_empty() {
                "none (required)".into()
            } else {
                code(write.default)
            },
            roles(write.roles),
            if write.persistent { "yes" } else { "no" },
            cell(write.what.what),
            code(&cell(write.what.reference))
        );
    }
    let _ = writeln!(w, "\n**The OS temp dir.**");
    if c.temp_dir.is_empty() {
        let _ = writeln!(w, "Not used by the roles' code.\n");
    } else {
        let _ = writeln!(w);
        for t in c.temp_dir {
            let _ = writeln!(w, "- {}: {}.", roles(t.roles), cite(&t.what));
        }
        let _ = writeln!(w);
    }

    let _ = writeln!(w, "**Ports.**\n");
    for p in c.ports {
        let _ = writeln!(
            w,
            "- {} {} (`{}`): {}.",
            p.name,
            p.port,
            p.key,
            cite(&p.what)
        );
    }
    let _ = writeln!(w, "\n**Readiness.** {}.\n", cite(&c.readiness));

    let _ = writeln!(
        w,
        "**Environment read** (the operator sets no other variable):\n"
    );
    for e in c.env {
        let _ = writeln!(w, "- `{}`: {}.", e.name, cite(&e.what));
    }
    let _ = writeln!(w, "\n**`-config.expand-env`.** {}.\n", cite(&c.expand_env));

    let _ = writeln!(
        w,
        "**Timeouts on the request path** (they must nest: query < server write < gateway):\n"
    );
    for t in c.timeouts.query {
        let _ = writeln!(
            w,
            "- query: `{}`, default {}: {}.",
            t.key,
            t.default,
            cite(&t.what)
        );
    }
    let t = &c.timeouts.server_write;
    let _ = writeln!(
        w,
        "- server write: `{}`, default {}: {}.",
        t.key,
        t.default,
        cite(&t.what)
    );
    if let Some(rule) = &c.timeouts.enforced {
        let _ = writeln!(w, "- enforced: {}.", cite(rule));
    }

    let _ = writeln!(w, "\n**SIGTERM and grace periods.**\n");
    for s in c.shutdown {
        let _ = writeln!(
            w,
            "- {}: {}s. {}.",
            if s.roles.is_empty() {
                "any other role".to_string()
            } else {
                s.roles.join(", ")
            },
            s.grace_seconds,
            cite(&s.what)
        );
    }
    let _ = writeln!(w, "\n**Leaving cleanly.**\n");
    for l in c.lifecycle {
        let _ = writeln!(
            w,
            "- {}: `{} {}`: {}.",
            l.roles.join(", "),
            l.method,
            l.path,
            cite(&l.what)
        );
    }
    let _ = writeln!(
        w,
        "\n**Leaving on scale-down** (what the operator calls, in order).\n"
    );
    for l in c.leave {
        let calls = |calls: &[super::Call]| {
            calls
                .iter()
                .map(|c| format!("`{} {}`", c.method, c.path))
                .collect::<Vec<_>>()
                .join(", then ")
        };
        let done = match l.done {
            super::Done::Answered => "done when the last call answers 2xx".to_string(),
            super::Done::Listed { path, line } => {
                format!("done when the last call answers 2xx, or when `GET {path}` lists `{line}`")
            }
            super::Done::Unready => "done when `/ready` stops answering 200".to_string(),
        };
        let undo = if l.undo.is_empty() {
            String::new()
        } else {
            format!("; called off with {}", calls(l.undo))
        };
        let _ = writeln!(
            w,
            "- {}: {}; {done}{undo}{}. {}.",
            l.roles.join(", "),
            calls(l.calls),
            if l.stops {
                "; the product stops inside the running process, so a pod called off after that is restarted"
            } else {
                ""
            },
            cite(&l.what)
        );
    }
    let _ = writeln!(
        w,
        "\n**Zones** (zoned pools: awareness in the shared file, each pod's zone as a flag).\n"
    );
    for z in c.zones {
        let _ = writeln!(
            w,
            "- {} ring: `{}: true`, `{}: 3`, `-{}=<zone>`; read by {}. {}.",
            z.role,
            z.awareness,
            z.replication_factor,
            z.zone_flag,
            z.readers.join(", "),
            cite(&z.what)
        );
    }
    let _ = writeln!(
        w,
        "\n**Single tenant** `{}`. {}.\n",
        c.single_tenant_id,
        cite(&c.single_tenant)
    );
    let t = &c.tenancy;
    let _ = writeln!(
        w,
        "**Multi-tenancy** `{}: true` (`spec.tenancy.mode: MultiTenant`). Without a tenant: {}.\n",
        t.switch,
        cite(&t.no_tenant)
    );
    let _ = writeln!(
        w,
        "**Runtime overrides** `{}` and `{}`: {}. {}.\n",
        t.runtime_file,
        t.runtime_period,
        cite(&t.reload),
        cite(&t.inheritance)
    );
    let _ = writeln!(
        w,
        "| Tenant limit | Key under `overrides.<tenant>` | Unit and default |"
    );
    let _ = writeln!(w, "|---|---|---|");
    for l in t.limits {
        let _ = writeln!(
            w,
            "| `{}` | `{}` | {} |",
            cell(l.field),
            l.key,
            cell(&cite(&l.what))
        );
    }
    let _ = writeln!(w, "\n**Other facts the rendering relies on.**\n");
    for n in c.notes {
        let _ = writeln!(w, "- {}.", cite(n));
    }
}

fn title(product: Product) -> &'static str {
    match product {
        Product::Mimir => "Mimir",
        Product::Loki => "Loki",
        Product::Tempo => "Tempo",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_generated_from_the_contracts() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/runtime-contract.md");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == super::markdown(),
            "docs/runtime-contract.md is out of date: run `make docs`"
        );
    }
}
