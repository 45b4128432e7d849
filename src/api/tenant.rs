use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The annotation a credential's Secret needs, naming the Tenant that may use it: every
/// Tenant may name any Secret of its namespace, and must not borrow another's.
pub const TENANT_ANNOTATION: &str = "lgtm.coordinated.dev/tenant";

/// The keys a `kubernetes.io/basic-auth` Secret holds.
pub const USERNAME_KEY: &str = "username";
pub const PASSWORD_KEY: &str = "password";
/// The key of a bearer-token Secret.
pub const TOKEN_KEY: &str = "token";

/// A tenant of a multi-tenant GrafanaCluster (ADR 15): who may read or write its data
/// through the gateway, and its limits. Its own kind rather than a list in the cluster,
/// so that a team can be given RBAC on its Tenants and Secrets only, and each Tenant
/// reports on its own credentials.
// kube's printcolumn(...) repeats `type_ = ...`, which clippy takes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lgtm.coordinated.dev",
    version = "v1alpha1",
    kind = "Tenant",
    namespaced,
    status = "TenantStatus",
    shortname = "tnt",
    category = "lgtm",
    derive = "PartialEq",
    doc = "A tenant of a multi-tenant GrafanaCluster: its id, credentials and limits.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef"),
    printcolumn(name = "Tenant ID", type_ = "string", json_path = ".status.tenantId"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Name of the GrafanaCluster (same namespace) this tenant's data lives in. Fixed at
    /// creation.
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterRef is immutable: create a new Tenant for another cluster"))]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub cluster_ref: String,

    /// The tenant id the products file the data under (the X-Scope-OrgID the gateway
    /// sets). Defaults to the Tenant's name. Fixed at creation: the data already written
    /// stays under the old id. The product's single-tenant id (Mimir `anonymous`, Loki
    /// `fake`, Tempo `single-tenant`) reads what was written before multi-tenancy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("id is immutable: the data already written stays under the old id; create a new Tenant"))]
    #[x_kube(validation = Rule::new("self != '.' && self != '..'").message("id cannot be . or .. (the products refuse them)"))]
    // The products' own rule (dskit tenant.ValidTenantID), less `*` and `'`, which
    // nginx and shells would need escaped, and `|`, their federation separator.
    #[schemars(length(min = 1, max = 150), regex(pattern = "^[a-zA-Z0-9!._()-]+$"))]
    pub id: Option<String>,

    /// Who may reach this tenant's data through the gateway, each credential with its
    /// scopes. Each Secret must be annotated `lgtm.coordinated.dev/tenant: <this Tenant's
    /// name>`, so that no Tenant borrows another's. Each username and token may belong
    /// to one Tenant of a cluster only (usernames and tokens compared without case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub credentials: Vec<TenantCredential>,

    /// Per-tenant limits, applied by the products from their runtime-overrides file
    /// without restarting a pod. Unset ones keep the product's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TenantLimits>,
}

/// One credential: HTTP Basic or a bearer token, from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.basicAuth) != has(self.bearerToken)").message("a credential is either basicAuth or bearerToken"))]
pub struct TenantCredential {
    /// HTTP Basic: a `kubernetes.io/basic-auth` Secret's `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<SecretRef>,
    /// `Authorization: Bearer <token>`: the Secret's `token` key, 32 to 512 characters
    /// of `A-Z a-z 0-9 - . _ ~ + / =`. Compared without regard to case, so generate it
    /// long and random (`openssl rand -hex 32`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<SecretRef>,
    /// What the credential may do: `read` (queries), `write` (ingestion, rule and
    /// alert configuration changes) or both (the default).
    #[serde(default = "both_scopes")]
    #[schemars(length(min = 1, max = 2))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub scopes: Vec<Scope>,
}

fn both_scopes() -> Vec<Scope> {
    vec![Scope::Read, Scope::Write]
}

/// A Secret of the Tenant's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// What a credential may do.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Queries and reads of rules and alerts.
    Read,
    /// Ingestion, and changes to rules and alert configuration.
    Write,
}

/// Per-tenant limits, product-neutral; each maps to one product key (see
/// docs/runtime-contract.md).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TenantLimits {
    /// Ingestion rate per second: samples for Mimir, bytes for Loki and Tempo (Tempo
    /// applies it per distributor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub ingestion_rate: Option<i64>,
    /// Ingestion burst, in the same unit as `ingestionRate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub ingestion_burst: Option<i64>,
    /// Active series (Mimir) or streams (Loki) across the cluster; live traces per
    /// ingester (Tempo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_active: Option<i64>,
    /// How long the tenant's data is kept, as a Prometheus-style duration (`30d`, `2w`,
    /// `720h`); the cluster's `retention` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub retention: Option<String>,
}

/// What the operator found of a Tenant.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The tenant id in use (`spec.id`, else the Tenant's name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant_id: String,
    /// Credentials of this Tenant written into the gateway's auth files (0 while the
    /// cluster runs single-tenant).
    #[serde(default)]
    pub served_credentials: i32,
    /// `Ready`: every credential is served by the gateway and the limits are in the
    /// runtime-overrides file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Tenant {
    /// The tenant id: `spec.id`, else the Tenant's name.
    pub fn tenant_id(&self) -> String {
        self.spec
            .id
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
