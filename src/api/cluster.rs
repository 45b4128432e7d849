use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretRef;
use crate::product::Product;

/// The coordinator of one Grafana Mimir, Loki or Tempo cluster: its single entry point
/// (an nginx gateway), its self-monitoring agent, the object storage every worker shares
/// and the product configuration every worker runs with. Workers come from `WorkerPool`s
/// that name this cluster in `spec.clusterRef`.
// kube's printcolumn(...) repeats `type_ = ...`, which clippy takes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lgtm.coordinated.dev",
    version = "v1alpha1",
    kind = "GrafanaCluster",
    namespaced,
    status = "GrafanaClusterStatus",
    shortname = "gcl",
    category = "lgtm",
    derive = "PartialEq",
    doc = "A Grafana Mimir, Loki or Tempo cluster: the coordinator of its WorkerPools.",
    printcolumn(name = "Product", type_ = "string", json_path = ".spec.product"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(
        name = "Consistent",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Consistent\")].status"
    ),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(
        name = "Missing Roles",
        type_ = "string",
        json_path = ".status.missingRolesSummary"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.storage.azure) || !has(self.storage.azure.endpointSuffix) || self.storage.azure.endpointSuffix.startsWith('blob.') || self.product == 'tempo'").message("an Azure endpointSuffix that does not start with blob. (an emulator such as Azurite at 127.0.0.1:10000) works with Tempo only: Mimir and Loki always reach https://<accountName>.<endpointSuffix>"),
)]
pub struct GrafanaClusterSpec {
    /// The Grafana product this cluster runs: mimir (metrics), loki (logs) or tempo
    /// (traces). Fixed at creation.
    #[x_kube(validation = Rule::new("self == oldSelf").message("product is immutable: create a new GrafanaCluster to run another product"))]
    pub product: Product,

    /// Product image tag. Defaults to the version this operator release is tested with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"))]
    pub version: Option<String>,

    /// Product image repository, e.g. a mirror of grafana/mimir. Defaults to the
    /// product's image on Docker Hub. The tag is `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.matches('[:@][^/]*$')").message("image is a repository without a tag or digest (for example registry.example.com/grafana/mimir): the tag is spec.version"))]
    pub image: Option<String>,

    /// Object storage shared by every worker. Required even for a single monolithic
    /// pool, so that scaling out later loses nothing.
    pub storage: StorageSpec,

    /// The nginx reverse proxy: the cluster's single entry point.
    #[serde(default)]
    pub gateway: GatewaySpec,

    /// The agent sidecar in the gateway pods that ships the cluster's own metrics,
    /// logs and traces.
    #[serde(default)]
    pub self_monitoring: SelfMonitoringSpec,

    /// Serve the gateway over TLS with a certificate from a kubernetes.io/tls Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// How long the product keeps data (Mimir blocks, Loki logs, Tempo traces), as a
    /// Prometheus-style duration such as `30d`, `2w` or `720h`. Unset keeps data forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,

    /// Free-form product configuration merged last into the configuration the operator
    /// renders, so any key set here wins (maps merge key by key; any other value,
    /// lists included, replaces the rendered one). The escape hatch for settings the
    /// operator does not model; never put credentials here: it lands in a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::free_form_object")]
    pub config_overrides: Option<serde_json::Value>,

    /// Who the data belongs to. `SingleTenant` (the default, for development or behind
    /// your own authentication): the product's one tenant (Mimir `anonymous`, Loki
    /// `fake`, Tempo `single-tenant`) holds everything and the gateway asks for no
    /// credentials. `MultiTenant`: every request needs a credential of a `Tenant` of this
    /// cluster, and the gateway files it under that tenant (ADR 15).
    #[serde(default)]
    pub tenancy: TenancySpec,

    /// Send the product's anonymous usage statistics to Grafana Labs
    /// (stats.grafana.org). Off by default: the products retry for ever where the
    /// internet is out of reach.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_reporting: bool,

    /// When true the operator keeps computing and reporting status but changes
    /// nothing in the cluster's objects or its pools' objects.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// How a cluster's data is split among tenants.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TenancySpec {
    /// `SingleTenant` or `MultiTenant`. Switching rolls every worker onto the product's
    /// multi-tenancy setting and the gateway onto credentials; data written single-tenant
    /// stays readable by a Tenant whose id is the product's single-tenant id.
    #[serde(default)]
    pub mode: TenancyMode,
}

/// A tenancy mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TenancyMode {
    /// Multi-tenancy off in the product: one tenant holds everything, and the gateway
    /// asks for no credentials (a client's X-Scope-OrgID is dropped).
    #[default]
    SingleTenant,
    /// Multi-tenancy on in the product; the gateway authenticates every request against
    /// the cluster's Tenants and sets X-Scope-OrgID from the credential.
    MultiTenant,
}

/// Where the workers keep their data: exactly one backend.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.s3), has(self.gcs), has(self.azure), has(self.filesystem)].exists_one(b, b)").message("storage takes exactly one backend: s3, gcs, azure or filesystem"),
    validation = Rule::new("has(self.s3) == has(oldSelf.s3) && has(self.gcs) == has(oldSelf.gcs) && has(self.azure) == has(oldSelf.azure) && has(self.filesystem) == has(oldSelf.filesystem)").message("the storage backend cannot change: the data already written stays in the old one (Loki even records it in its schema); create a new GrafanaCluster"),
)]
pub struct StorageSpec {
    /// An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,

    /// A Google Cloud Storage bucket, with a service-account key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsStorage>,

    /// An Azure Blob Storage container, with the storage account's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureStorage>,

    /// The workers' own volume, for development and tests only: one `all` pool of one
    /// replica, which the cluster's Consistent condition enforces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemStorage>,

    /// Check the bucket for real before workers roll onto these settings: the operator
    /// writes, reads, lists and deletes one object under `.lgtm-operator-probe/` with the
    /// workers' own credentials, endpoint and CA. Turn it off only where the operator
    /// cannot reach the bucket; `StorageReady` then says that it was not checked.
    #[serde(default = "default_probe")]
    pub probe: bool,
}

fn default_probe() -> bool {
    true
}

/// The backend of a [`StorageSpec`], whichever it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend<'a> {
    S3(&'a S3Storage),
    Gcs(&'a GcsStorage),
    Azure(&'a AzureStorage),
    Filesystem(&'a FilesystemStorage),
}

impl StorageSpec {
    /// The backend; admission allows exactly one. A spec that bypassed admission (a unit
    /// test, `lgtm-operator render`) with none reads as an empty filesystem.
    pub fn backend(&self) -> Backend<'_> {
        const NONE: FilesystemStorage = FilesystemStorage {};
        match (&self.s3, &self.gcs, &self.azure, &self.filesystem) {
            (Some(s3), ..) => Backend::S3(s3),
            (_, Some(gcs), ..) => Backend::Gcs(gcs),
            (_, _, Some(azure), _) => Backend::Azure(azure),
            (_, _, _, Some(filesystem)) => Backend::Filesystem(filesystem),
            _ => Backend::Filesystem(&NONE),
        }
    }
}

impl Backend<'_> {
    /// The backend's name, as the products and the metrics spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::S3(_) => "s3",
            Backend::Gcs(_) => "gcs",
            Backend::Azure(_) => "azure",
            Backend::Filesystem(_) => "filesystem",
        }
    }
}

/// A Google Cloud Storage bucket.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GcsStorage {
    /// Bucket name.
    #[x_kube(validation = Rule::new("self != ''").message("bucket must not be empty"))]
    #[schemars(length(max = 222))]
    pub bucket: String,

    /// The Secret key holding a service-account JSON key. Workers get it as a mounted
    /// file named by `GOOGLE_APPLICATION_CREDENTIALS`, which all three products read.
    pub credentials_secret: GcsCredentialsRef,
}

/// A Secret in the cluster's namespace holding a service-account JSON key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GcsCredentialsRef {
    /// Secret name.
    pub name: String,
    /// Key of the JSON key file in the Secret.
    #[serde(default = "default_gcs_key")]
    pub key: String,
}

fn default_gcs_key() -> String {
    "key.json".into()
}

/// An Azure Blob Storage container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureStorage {
    /// Storage account name.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]{3,24}$')").message("accountName is 3 to 24 lowercase letters and digits, as Azure names storage accounts"))]
    pub account_name: String,

    /// Container name.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9-]{1,61}[a-z0-9])?$')").message("container is 3 to 63 lowercase letters, digits and dashes, as Azure names containers"))]
    pub container: String,

    /// The Blob service's host suffix: `blob.core.windows.net` unless a sovereign cloud
    /// names another. Workers reach `https://<accountName>.<endpointSuffix>`. A suffix
    /// that does not start with `blob.` is an emulator at `http://<suffix>/<account>`
    /// (Tempo only); the operator probes it from its own pod, so name it as a Service
    /// both reach, not 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = "^[A-Za-z0-9.:-]+$"))]
    pub endpoint_suffix: Option<String>,

    /// The Secret holding the storage account's key.
    pub credentials_secret: AzureCredentialsRef,
}

/// A Secret in the cluster's namespace holding an Azure storage account key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureCredentialsRef {
    /// Secret name.
    pub name: String,
    /// Key of the account key in the Secret.
    #[serde(default = "default_account_key_key")]
    pub account_key_key: String,
}

fn default_account_key_key() -> String {
    "account-key".into()
}

/// The workers' own data volume as the object store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct FilesystemStorage {}

/// An S3-compatible bucket.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Storage {
    /// Host and optional port of the S3 API, e.g. `minio.minio.svc:9000`. A scheme is
    /// optional; `https://` means TLS.
    #[x_kube(validation = Rule::new("self != ''").message("endpoint must not be empty"))]
    #[schemars(length(max = 512), regex(pattern = "^[^[:space:]]*$"))]
    pub endpoint: String,

    /// Bucket name.
    #[x_kube(validation = Rule::new("self != ''").message("bucket must not be empty"))]
    pub bucket: String,

    /// Bucket region, when the provider needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// Talk plain HTTP to the endpoint. Defaults to true only when the endpoint is not
    /// `https://` and no CA bundle is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,

    /// The Secret holding the access key pair. Credentials are never written inline:
    /// workers read them as environment variables from this Secret.
    pub credentials_secret: CredentialsSecretRef,

    /// A Secret key holding a PEM CA bundle for the endpoint's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretKeyRef>,
}

/// A Secret in the cluster's namespace holding an S3 access key pair.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Secret name.
    pub name: String,
    /// Key of the access key id in the Secret.
    #[serde(default = "default_access_key_id_key")]
    pub access_key_id_key: String,
    /// Key of the secret access key in the Secret.
    #[serde(default = "default_secret_access_key_key")]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "access-key-id".into()
}

fn default_secret_access_key_key() -> String {
    "secret-access-key".into()
}

/// One key of a Secret in the cluster's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key in the Secret.
    #[serde(default = "default_ca_key")]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

/// The nginx gateway Deployment and its Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Number of gateway pods. A PodDisruptionBudget keeps one up during voluntary
    /// disruptions when there are two or more.
    #[serde(default = "default_one")]
    #[x_kube(validation = Rule::new("self >= 0").message("replicas must not be negative"))]
    pub replicas: i32,

    /// nginx image. Must run as non-root (the pod's root filesystem is read-only).
    #[serde(default = "default_gateway_image")]
    pub image: String,

    /// nginx-prometheus-exporter image, run as a sidecar that reads nginx's status.
    #[serde(default = "default_exporter_image")]
    pub exporter_image: String,

    /// The Service in front of the gateway pods.
    #[serde(default)]
    pub service: GatewayServiceSpec,

    /// Compute resources of the nginx container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::resources")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the gateway pods must run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::node_selector")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations of the gateway pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            replicas: default_one(),
            image: default_gateway_image(),
            exporter_image: default_exporter_image(),
            service: GatewayServiceSpec::default(),
            resources: None,
            node_selector: None,
            tolerations: None,
        }
    }
}

fn default_one() -> i32 {
    1
}

fn default_gateway_image() -> String {
    "nginxinc/nginx-unprivileged:1.27-alpine".into()
}

fn default_exporter_image() -> String {
    "nginx/nginx-prometheus-exporter:1.4.2".into()
}

/// The gateway Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Annotations for the Service, e.g. for a cloud load balancer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// IP families the Service serves: `SingleStack`, `PreferDualStack` (both on a
    /// dual-stack cluster, one elsewhere) or `RequireDualStack`; the cluster's default
    /// when unset. The gateway pod listens on IPv6 wherever it has an IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<IpFamilyPolicy>,
}

/// A Service's IP family policy, as Kubernetes names it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpFamilyPolicy {
    SingleStack,
    PreferDualStack,
    RequireDualStack,
}

impl IpFamilyPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamilyPolicy::SingleStack => "SingleStack",
            IpFamilyPolicy::PreferDualStack => "PreferDualStack",
            IpFamilyPolicy::RequireDualStack => "RequireDualStack",
        }
    }
}

/// How the gateway Service is exposed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Self-monitoring: an agent sidecar in each gateway pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SelfMonitoringSpec {
    /// Run the agent. Defaults to true when any destination below is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,

    /// Grafana Alloy image.
    #[serde(default = "default_agent_image")]
    pub image: String,

    /// Where the agent remote-writes the workers' and the gateway's metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsDestination>,

    /// Where the agent pushes the workers' logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogsDestination>,

    /// Where the workers send their own traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<TracesDestination>,
}

impl Default for SelfMonitoringSpec {
    fn default() -> Self {
        Self {
            enabled: None,
            image: default_agent_image(),
            metrics: None,
            logs: None,
            traces: None,
        }
    }
}

impl SelfMonitoringSpec {
    /// Whether the agent runs: as asked, else when any destination is set.
    pub fn is_enabled(&self) -> bool {
        self.enabled
            .unwrap_or(self.metrics.is_some() || self.logs.is_some() || self.traces.is_some())
    }
}

fn default_agent_image() -> String {
    "grafana/alloy:v1.5.0".into()
}

/// A Prometheus remote-write endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricsDestination {
    /// Remote-write URL, e.g. http://prometheus.monitoring:9090/api/v1/write.
    pub remote_write_url: String,
    /// The credential the agent sends, for a destination that asks for one (a
    /// multi-tenant cluster's gateway: a Tenant's credential with the write scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<DestinationAuth>,
}

/// A Loki push endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogsDestination {
    /// Loki push URL, e.g. http://logs-gateway.observability:3100/loki/api/v1/push.
    pub loki_push_url: String,
    /// The credential the agent sends, as for metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<DestinationAuth>,
}

/// The agent's credential for a destination: HTTP Basic or a bearer token, from a Secret
/// in the cluster's namespace, mounted into the agent. The agent reads the password or
/// token from the mounted file on every request, so rotating it restarts nothing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.basicAuth) != has(self.bearerToken)").message("auth is either basicAuth or bearerToken"))]
pub struct DestinationAuth {
    /// HTTP Basic: a `kubernetes.io/basic-auth` Secret's `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<SecretRef>,
    /// `Authorization: Bearer <token>`: the Secret's `token` key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<SecretRef>,
}

impl DestinationAuth {
    /// The Secret it names.
    pub fn secret_name(&self) -> &str {
        self.basic_auth
            .as_ref()
            .or(self.bearer_token.as_ref())
            .map(|s| s.secret_name.as_str())
            .unwrap_or_default()
    }
}

/// An OTLP gRPC endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TracesDestination {
    /// host:port of an OTLP gRPC receiver, e.g. traces-gateway.observability:4317.
    pub otlp_endpoint: String,
}

/// TLS for the gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A kubernetes.io/tls Secret (keys tls.crt and tls.key) in the cluster's namespace.
    #[schemars(
        length(max = 253),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: String,
}

/// What the operator observed and did, for people and for tools.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The product running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<Product>,
    /// The product version running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"))]
    pub version: Option<String>,
    /// In-cluster URL of the gateway: the one address clients use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
    /// Every role some pool provides, and every required role, with the pools that
    /// provide it and their replica counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleStatus>,
    /// Required roles that no valid pool with replicas provides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_roles: Vec<String>,
    /// `missingRoles` as one comma-separated string; empty when none are missing.
    #[serde(default)]
    pub missing_roles_summary: String,
    /// Advice for a sturdier deployment. Never a failing condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<String>,
    /// The date (YYYY-MM-DD) Loki's schema starts from, chosen once when the cluster
    /// first became consistent and kept for the cluster's life: recomputing it would
    /// make existing data unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki_schema_from: Option<String>,
    /// SHA-256 of the shared product configuration the workers run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Consistent, StorageReady, Available, Degraded, Progressing,
    /// ReconciliationPaused and ConfigValid (TLSReady when TLS is asked for,
    /// SelfMonitoringReady when a self-monitoring destination names a credential).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One role of the product and who provides it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RoleStatus {
    /// Role name, as the product's `-target` spells it.
    pub name: String,
    /// Whether a consistent cluster needs this role.
    pub required: bool,
    /// Pools providing this role.
    #[serde(default)]
    pub pools: Vec<String>,
    /// Desired replicas carrying this role, summed over its pools.
    pub replicas: i32,
    /// Ready replicas carrying this role, summed over its pools.
    pub ready_replicas: i32,
}
