//! How long the pure work of a reconcile takes: the consistency computation, the gateway's
//! nginx.conf, the shared product configuration, and every child of a cluster and its
//! pools (what `lgtm-operator render` does). `make bench` runs it.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lgtm_operator::offline::{Inputs, Target, render};
use lgtm_operator::product::{PoolSummary, Product, Topology, expand};
use lgtm_operator::render::nginx::{self, NginxOptions};

const SAMPLES: [&str; 4] = [
    include_str!("../deploy/samples/s3-credentials.yaml"),
    include_str!("../deploy/samples/mimir-read-write-backend.yaml"),
    include_str!("../deploy/samples/loki-monolithic.yaml"),
    include_str!("../deploy/samples/tempo-microservices.yaml"),
];

/// A big Mimir: 200 pools, every role split many times over.
fn many_pools() -> Vec<PoolSummary> {
    let roles = Product::Mimir.catalogue().roles;
    (0..200)
        .map(|i| PoolSummary {
            name: format!("pool-{i}"),
            product: Some(Product::Mimir),
            toggles: vec![roles[i % roles.len()].name],
            replicas: 3,
            ready_replicas: 2,
            zones: Vec::new(),
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let pools = many_pools();
    c.bench_function("topology of 200 Mimir pools", |b| {
        b.iter(|| Topology::new(Product::Mimir, black_box(&pools)))
    });

    let options = NginxOptions::in_cluster("metrics", "obs", "cluster.local", None);
    for product in Product::ALL {
        let present = expand(product, &["all"]);
        c.bench_function(&format!("nginx.conf for {product}"), |b| {
            b.iter(|| nginx::render(product, black_box(&present), &options))
        });
    }

    let mut inputs = Inputs::new("obs");
    for (i, sample) in SAMPLES.iter().enumerate() {
        inputs
            .add(&format!("sample{i}"), sample)
            .expect("samples parse");
    }
    let target = Target::default();
    c.bench_function("every child of the three samples (render)", |b| {
        b.iter(|| render(black_box(&inputs), &target).expect("renders"))
    });
}

criterion_group!(render_benches, benches);
criterion_main!(render_benches);
