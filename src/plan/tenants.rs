//! A cluster's Tenants (ADR 15): which credentials the gateway serves for which tenant
//! and scopes, the limits the products read from their runtime-overrides file, and what
//! each Tenant's status says. Secret values go into the gateway's auth files (a Secret)
//! and nowhere else: messages name Secrets and keys, never values.

use std::collections::BTreeSet;

use base64::Engine;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use sha1::Digest;

use super::Reason;
use super::conditions::Observed;
use super::secrets::Secrets;
use crate::api::{GrafanaCluster, Scope, SecretRef, TenancyMode, Tenant, TenantLimits};
use crate::api::{PASSWORD_KEY, TENANT_ANNOTATION, TOKEN_KEY, USERNAME_KEY};
use crate::product::Product;
use crate::render::CREDENTIALS_CHECKSUM;
use crate::render::config::Duration;
pub use crate::render::tenancy::{AUTH_KEY, AuthFiles, KEY_BYTES, TenantEntry, auth_secret_name};

/// The longest tenant id the products take (dskit's tenant.ValidTenantID).
const MAX_TENANT_ID: usize = 150;

/// The Secrets the Tenants name, in their order.
pub fn referenced(tenants: &[Tenant]) -> Vec<&str> {
    tenants
        .iter()
        .flat_map(|t| &t.spec.credentials)
        .flat_map(|c| [&c.basic_auth, &c.bearer_token])
        .flatten()
        .map(|r| r.secret_name.as_str())
        .collect()
}

/// What became of one Tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantOutcome {
    /// The Tenant's name.
    pub name: String,
    pub tenant_id: String,
    /// Credentials written into the auth files.
    pub served: i32,
    /// Why the Tenant is not fully served, if it is not; the message lists each problem.
    pub problem: Option<(Reason, String)>,
}

/// The plan for a cluster's Tenants.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantsPlan {
    /// The gateway's auth files; `None` while the cluster runs single-tenant.
    pub auth: Option<AuthFiles>,
    /// Tenants whose limits go into the runtime-overrides file, by id.
    pub entries: Vec<TenantEntry>,
    pub outcomes: Vec<TenantOutcome>,
}

impl TenantsPlan {
    /// Whether some tenant sets its own retention (Loki then turns its compactor's
    /// retention on).
    pub fn any_retention(&self) -> bool {
        self.entries.iter().any(|e| e.retention.is_some())
    }
}

/// Plans the Tenants of `cluster`, oldest first: a tenant id, a username or a token
/// already taken by an older Tenant is refused on the newer one, so that adding a
/// Tenant never takes anything away from another. `secrets` holds the Tenants' Secrets
/// and the gateway's auth Secret as read; `fresh_key` is a random key, used when that
/// Secret holds none yet.
pub fn plan(
    cluster: &GrafanaCluster,
    tenants: &[Tenant],
    secrets: &Secrets,
    fresh_key: &[u8],
) -> TenantsPlan {
    let product = cluster.spec.product;
    let multi_tenant = cluster.spec.tenancy.mode == TenancyMode::MultiTenant;
    let mut ordered: Vec<&Tenant> = tenants.iter().collect();
    ordered.sort_by_key(|t| (t.metadata.creation_timestamp.clone(), t.name_any()));

    let mut auth = AuthFiles {
        key: auth_key(cluster, secrets, fresh_key),
        ..AuthFiles::default()
    };
    let mut taken = Taken::default();
    let mut entries = Vec::new();
    let mut outcomes = Vec::new();
    for tenant in ordered {
        let id = tenant.tenant_id();
        let mut problems = Vec::new();
        let mut served = 0;
        if id.len() > MAX_TENANT_ID {
            problems.push((
                Reason::InvalidTenantId,
                format!(
                    "the tenant id (spec.id, else the Tenant's name) has {} characters; the products take at most {MAX_TENANT_ID}",
                    id.len()
                ),
            ));
        } else if !taken.ids.insert(id.clone()) {
            problems.push((
                Reason::DuplicateTenantId,
                format!("an older Tenant of this cluster already has id {id}"),
            ));
        } else {
            match check_limits(product, tenant.spec.limits.as_ref()) {
                Ok(retention) => entries.push(TenantEntry {
                    id: id.clone(),
                    limits: tenant.spec.limits.clone().unwrap_or_default(),
                    retention,
                }),
                Err(message) => problems.push((Reason::InvalidLimits, message)),
            }
            served = add_credentials(tenant, (secrets, &mut taken), &mut auth, &mut problems);
        }
        outcomes.push(TenantOutcome {
            name: tenant.name_any(),
            tenant_id: id,
            served: if multi_tenant { served } else { 0 },
            problem: summarize(problems),
        });
    }
    TenantsPlan {
        auth: multi_tenant.then_some(auth),
        entries,
        outcomes,
    }
}

/// The auth Secret's key: the one the operator stored in it (a Secret it controls, so
/// that nobody chooses the key by creating the Secret first), else `fresh_key`.
fn auth_key(cluster: &GrafanaCluster, secrets: &Secrets, fresh_key: &[u8]) -> Vec<u8> {
    let name = auth_secret_name(&cluster.name_any());
    let uid = cluster.uid();
    let ours = secrets
        .get(&name)
        .and_then(Option::as_ref)
        .is_some_and(|s| {
            s.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        });
    ours.then(|| super::secrets::value(secrets, &name, AUTH_KEY))
        .flatten()
        .filter(|k| k.len() >= KEY_BYTES)
        .unwrap_or_else(|| fresh_key.to_vec())
}

/// Writes the Tenant's usable credentials into `auth` and their problems into
/// `problems`; returns how many it wrote.
fn add_credentials(
    tenant: &Tenant,
    (secrets, taken): (&Secrets, &mut Taken),
    auth: &mut AuthFiles,
    problems: &mut Vec<(Reason, String)>,
) -> i32 {
    let id = tenant.tenant_id();
    let mut served = 0;
    for (index, credential) in tenant.spec.credentials.iter().enumerate() {
        let grant = format!("{id} {}", scopes_word(&credential.scopes));
        let resolved = resolve(credential, (&tenant.name_any(), secrets), taken)
            .map_err(|(r, m)| (r, format!("credentials[{index}]: {m}")));
        match resolved {
            Ok(Resolved::Basic { username, password }) => {
                let hash = ssha(&auth.key, &username, &password);
                auth.htpasswd.push_str(&format!("{username}:{hash}\n"));
                auth.users_map
                    .push_str(&format!("\"user:{username}\" \"{grant}\";\n"));
                served += 1;
            }
            Ok(Resolved::Bearer { token }) => {
                auth.bearer_map
                    .push_str(&format!("\"Bearer {token}\" \"{grant}\";\n"));
                served += 1;
            }
            Err(problem) => problems.push(problem),
        }
    }
    served
}

/// Tenant ids, usernames and tokens already given to an older Tenant.
#[derive(Default)]
struct Taken {
    ids: BTreeSet<String>,
    usernames: BTreeSet<String>,
    tokens: BTreeSet<String>,
}

enum Resolved {
    Basic { username: String, password: Vec<u8> },
    Bearer { token: String },
}

/// A credential's values from its Secret, checked; the Secret must be annotated for
/// `tenant` (the Tenant's name).
fn resolve(
    credential: &crate::api::TenantCredential,
    (tenant, secrets): (&str, &Secrets),
    taken: &mut Taken,
) -> Result<Resolved, (Reason, String)> {
    let duplicate = |what: &str| {
        (
            Reason::DuplicateCredential,
            format!("this {what} already belongs to an older Tenant of this cluster"),
        )
    };
    match (&credential.basic_auth, &credential.bearer_token) {
        (Some(secret), _) => {
            let username = key(secret, (tenant, secrets), USERNAME_KEY)?;
            let password = key(secret, (tenant, secrets), PASSWORD_KEY)?;
            let username = String::from_utf8(username)
                .ok()
                .filter(|u| valid_username(u))
                .ok_or_else(|| invalid(secret, USERNAME_KEY, USERNAME_RULE))?;
            if password.is_empty() {
                return Err(invalid(secret, PASSWORD_KEY, "it is empty"));
            }
            // nginx's map compares without regard to case, and refuses two keys that
            // differ only by it: the gateway would not start.
            if !taken.usernames.insert(username.to_ascii_lowercase()) {
                return Err(duplicate("username"));
            }
            Ok(Resolved::Basic { username, password })
        }
        (None, Some(secret)) => {
            let token = key(secret, (tenant, secrets), TOKEN_KEY)?;
            let token = String::from_utf8(token.trim_ascii().to_vec())
                .ok()
                .filter(|t| valid_token(t))
                .ok_or_else(|| invalid(secret, TOKEN_KEY, TOKEN_RULE))?;
            // nginx's map compares without regard to case.
            if !taken.tokens.insert(token.to_ascii_lowercase()) {
                return Err(duplicate("token"));
            }
            Ok(Resolved::Bearer { token })
        }
        (None, None) => Err((
            Reason::InvalidCredential,
            "names neither basicAuth nor bearerToken".into(),
        )),
    }
}

/// The value of `key` in the credential's Secret (`data` or `stringData`). A Secret
/// counts only when annotated for the Tenant: any Tenant may name any Secret of the
/// namespace, and must not borrow another's credential. The message is the same whether
/// the Secret is missing or not annotated, so it tells nothing about other Secrets.
fn key(
    secret: &SecretRef,
    (tenant, secrets): (&str, &Secrets),
    key: &str,
) -> Result<Vec<u8>, (Reason, String)> {
    let name = &secret.secret_name;
    let for_tenant = |s: &k8s_openapi::api::core::v1::Secret| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TENANT_ANNOTATION))
            .is_some_and(|t| t == tenant)
    };
    if !matches!(secrets.get(name), Some(Some(s)) if for_tenant(s)) {
        return Err((
            Reason::SecretNotFound,
            format!("Secret {name} not found, or not annotated {TENANT_ANNOTATION}: {tenant}"),
        ));
    }
    super::secrets::value(secrets, name, key).ok_or_else(|| {
        (
            Reason::SecretKeyMissing,
            format!("Secret {name} has no key {key}"),
        )
    })
}

fn invalid(secret: &SecretRef, key: &str, rule: &str) -> (Reason, String) {
    (
        Reason::InvalidCredential,
        format!("key {key} of Secret {}: {rule}", secret.secret_name),
    )
}

const USERNAME_RULE: &str = "a username is 1 to 64 characters of A-Z a-z 0-9 . _ @ -";
const TOKEN_RULE: &str = "a token is 32 to 512 characters of A-Z a-z 0-9 - . _ ~ + / =";

/// Usernames are written into nginx's map and htpasswd syntax: no quotes, colons or
/// spaces can reach it.
fn valid_username(username: &str) -> bool {
    (1..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// RFC 6750's token characters; at least 32, so that a case-insensitive match still
/// leaves far more than 128 bits to guess.
fn valid_token(token: &str) -> bool {
    (32..=512).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
}

/// `read`, `write` or `read+write`, as the gateway's scope check reads it.
pub fn scopes_word(scopes: &[Scope]) -> &'static str {
    let set: BTreeSet<Scope> = scopes.iter().copied().collect();
    match (set.contains(&Scope::Read), set.contains(&Scope::Write)) {
        (true, true) => "read+write",
        (false, true) => "write",
        // Admission gives at least one scope; none reads as read-only.
        _ => "read",
    }
}

/// `{SSHA}` (salted SHA-1), which nginx checks itself on any libc. The salt is derived
/// from the auth Secret's key, the user and the password, so the same inputs give the
/// same file and the gateway rolls only when a credential changes, while nobody without
/// the key can test a guess against anything public. The Secrets hold the password in
/// plain text anyway: a slow hash would protect little and cost every request.
pub fn ssha(key: &[u8], username: &str, password: &[u8]) -> String {
    use sha2::Sha256;
    let mut salt_hash = Sha256::new();
    for part in [key, username.as_bytes(), password] {
        salt_hash.update((part.len() as u64).to_be_bytes());
        salt_hash.update(part);
    }
    let salt = &salt_hash.finalize()[..8];
    let mut digest = sha1::Sha1::new();
    digest.update(password);
    digest.update(salt);
    let mut bytes = digest.finalize().to_vec();
    bytes.extend_from_slice(salt);
    format!(
        "{{SSHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The tenant's retention, parsed; Loki keeps data by whole days (its index period).
fn check_limits(
    product: Product,
    limits: Option<&TenantLimits>,
) -> Result<Option<Duration>, String> {
    let Some(retention) = limits.and_then(|l| l.retention.as_deref()) else {
        return Ok(None);
    };
    let parsed = Duration::parse(retention).map_err(|e| format!("limits.retention: {e}"))?;
    if product == Product::Loki && parsed.seconds() % 86_400 != 0 {
        return Err(format!(
            "limits.retention: Loki keeps data by whole days, not {retention}"
        ));
    }
    Ok(Some(parsed))
}

/// The first problem's reason, and every problem's message.
fn summarize(problems: Vec<(Reason, String)>) -> Option<(Reason, String)> {
    let reason = problems.first()?.0;
    let message = problems
        .into_iter()
        .map(|(_, m)| m)
        .collect::<Vec<_>>()
        .join("; ");
    Some((reason, message))
}

/// The Tenants' condition type.
pub const READY: &str = "Ready";

/// A Tenant's `Ready`: its problem first, then whether the cluster asks for credentials
/// at all, then whether the gateway pods already run with the current auth files.
pub fn ready(outcome: &TenantOutcome, multi_tenant: bool, gateway_live: bool) -> Observed {
    let id = &outcome.tenant_id;
    if let Some((reason, message)) = &outcome.problem {
        return Observed::new(READY, false, *reason, message.clone());
    }
    if !multi_tenant {
        return Observed::new(
            READY,
            false,
            Reason::SingleTenantCluster,
            "the cluster runs SingleTenant (spec.tenancy.mode): its gateway asks for no credentials",
        );
    }
    if !gateway_live {
        return Observed::new(
            READY,
            false,
            Reason::CredentialsRollingOut,
            format!("the gateway is rolling out onto tenant {id}'s current credentials"),
        );
    }
    Observed::new(
        READY,
        true,
        Reason::CredentialsLive,
        format!(
            "the gateway serves {} credential(s) for tenant {id}",
            outcome.served
        ),
    )
}

/// The `Ready` of a Tenant whose cluster does not exist: nothing serves it, and its
/// clusterRef cannot change.
pub fn without_cluster(tenant: &Tenant) -> Observed {
    Observed::new(
        READY,
        false,
        Reason::ClusterNotFound,
        format!(
            "GrafanaCluster {:?} does not exist in namespace {}: create it, or recreate this Tenant with the right clusterRef",
            tenant.spec.cluster_ref,
            tenant.namespace().unwrap_or_default()
        ),
    )
}

/// The credentials checksum a gateway Deployment's pod template carries.
fn credentials_checksum(gateway: &Deployment) -> Option<&String> {
    gateway
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(CREDENTIALS_CHECKSUM))
}

/// Whether the live gateway Deployment runs every pod with the auth files the planned
/// one carries (none for a single-tenant cluster): its template carries the same
/// checksum, the Deployment controller has seen that template, and no pod of an older
/// one is left.
pub fn gateway_serves(gateway: &Deployment, planned: &Deployment) -> bool {
    let wanted = gateway.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let rolled_out = gateway.status.as_ref().is_some_and(|s| {
        s.observed_generation >= gateway.metadata.generation
            && s.updated_replicas.unwrap_or(0) >= wanted
            && s.replicas.unwrap_or(0) == s.updated_replicas.unwrap_or(0)
            && s.available_replicas.unwrap_or(0) >= wanted
    });
    credentials_checksum(gateway) == credentials_checksum(planned) && rolled_out
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::api::core::v1::Secret;

    use super::*;
    use crate::fixtures;

    fn tenant(name: &str, created: &str, spec_yaml: &str) -> Tenant {
        let yaml = format!(
            "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {name}, namespace: obs, creationTimestamp: '{created}'}}\nspec:\n  clusterRef: metrics\n{}",
            spec_yaml
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>()
        );
        serde_saphyr::from_str(&yaml).expect("fixture tenant parses")
    }

    fn secret(name: &str, data: &[(&str, &str)]) -> (String, Option<Secret>) {
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.into());
        secret.data = Some(
            data.iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        k8s_openapi::ByteString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
        );
        (name.to_string(), Some(secret))
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn secrets() -> Secrets {
        Secrets::from([
            secret("alice", &[("username", "alice"), ("password", "pw")]),
            secret(
                "alice-again",
                &[("username", "alice"), ("password", "other")],
            ),
            secret("token", &[("token", TOKEN)]),
            secret("token-upper", &[("token", &TOKEN.to_uppercase())]),
            secret("short", &[("token", "abc")]),
            secret("bad-user", &[("username", "a\"b"), ("password", "pw")]),
            secret("no-password", &[("username", "carol")]),
        ])
    }

    /// The fixture Secrets, each annotated for the first of `tenants` that names it.
    fn owned(tenants: &[Tenant]) -> Secrets {
        let mut all = secrets();
        for tenant in tenants {
            for name in referenced(std::slice::from_ref(tenant)) {
                if let Some(Some(secret)) = all.get_mut(name) {
                    secret
                        .metadata
                        .annotations
                        .get_or_insert_default()
                        .entry(TENANT_ANNOTATION.into())
                        .or_insert(tenant.name_any());
                }
            }
        }
        all
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn multi_tenant(product: Product) -> GrafanaCluster {
        let mut cluster = fixtures::minimal_cluster(product);
        cluster.spec.tenancy.mode = TenancyMode::MultiTenant;
        cluster
    }

    fn outcome<'p>(plan: &'p TenantsPlan, name: &str) -> &'p TenantOutcome {
        plan.outcomes
            .iter()
            .find(|o| o.name == name)
            .expect("an outcome")
    }

    #[test]
    fn credentials_become_nginx_files_with_tenant_and_scopes() {
        let tenants = [tenant(
            "team-a",
            "2026-01-01T00:00:00Z",
            "credentials:\n- basicAuth: {secretName: alice}\n- bearerToken: {secretName: token}\n  scopes: [read]",
        )];
        let plan = plan_again(&tenants);
        let auth = plan.auth.expect("multi-tenant");
        assert_eq!(auth.users_map, "\"user:alice\" \"team-a read+write\";\n");
        assert_eq!(
            auth.bearer_map,
            format!("\"Bearer {TOKEN}\" \"team-a read\";\n")
        );
        let (user, hash) = auth.htpasswd.trim_end().split_once(':').expect("user:hash");
        assert_eq!(user, "alice");
        // {SSHA} = base64(sha1(password ‖ salt) ‖ salt), as nginx checks it.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(hash.strip_prefix("{SSHA}").expect("SSHA"))
            .expect("base64");
        let (digest, salt) = raw.split_at(20);
        let mut sha = sha1::Sha1::new();
        sha.update(b"pw");
        sha.update(salt);
        assert_eq!(digest, sha.finalize().as_slice());
        assert_eq!(outcome(&plan_again(&tenants), "team-a").served, 2);
    }

    fn plan_again(tenants: &[Tenant]) -> TenantsPlan {
        plan(&multi_tenant(Product::Loki), tenants, &owned(tenants), KEY)
    }

    #[test]
    fn the_same_credentials_give_the_same_files_so_the_gateway_does_not_roll() {
        let tenants = [tenant(
            "team-a",
            "2026-01-01T00:00:00Z",
            "credentials:\n- basicAuth: {secretName: alice}",
        )];
        assert_eq!(plan_again(&tenants).auth, plan_again(&tenants).auth);
        let changed = ssha(KEY, "alice", b"pw2");
        assert_ne!(ssha(KEY, "alice", b"pw"), changed);
        assert_ne!(ssha(KEY, "bob", b"pw"), ssha(KEY, "alice", b"pw"));
        assert_ne!(
            ssha(b"another key", "alice", b"pw"),
            ssha(KEY, "alice", b"pw")
        );
    }

    #[test]
    fn the_older_tenant_keeps_a_contested_id_username_or_token() {
        let tenants = [
            tenant(
                "newer",
                "2026-02-01T00:00:00Z",
                "credentials:\n- basicAuth: {secretName: alice-again}\n- bearerToken: {secretName: token-upper}",
            ),
            tenant(
                "older",
                "2026-01-01T00:00:00Z",
                "credentials:\n- basicAuth: {secretName: alice}\n- bearerToken: {secretName: token}",
            ),
            tenant("same-id", "2026-03-01T00:00:00Z", "id: older"),
        ];
        let plan = plan_again(&tenants);
        assert_eq!(outcome(&plan, "older").problem, None);
        assert_eq!(outcome(&plan, "older").served, 2);
        let newer = outcome(&plan, "newer");
        assert_eq!(newer.served, 0);
        let (reason, message) = newer.problem.clone().expect("a problem");
        assert_eq!(reason, Reason::DuplicateCredential);
        assert_eq!(
            message,
            "credentials[0]: this username already belongs to an older Tenant of this cluster; credentials[1]: this token already belongs to an older Tenant of this cluster"
        );
        assert_eq!(
            outcome(&plan, "same-id").problem.as_ref().map(|p| p.0),
            Some(Reason::DuplicateTenantId)
        );
        let auth = plan.auth.expect("auth");
        assert_eq!(auth.htpasswd.lines().count(), 1, "only the older alice");
    }

    #[test]
    fn bad_credentials_are_named_without_their_values_and_the_good_ones_served() {
        let tenants = [tenant(
            "t",
            "2026-01-01T00:00:00Z",
            "credentials:\n- basicAuth: {secretName: missing}\n- basicAuth: {secretName: no-password}\n- bearerToken: {secretName: short}\n- basicAuth: {secretName: bad-user}\n- basicAuth: {secretName: alice}",
        )];
        let plan = plan_again(&tenants);
        let t = outcome(&plan, "t");
        assert_eq!(t.served, 1);
        let (reason, message) = t.problem.clone().expect("problems");
        assert_eq!(reason, Reason::SecretNotFound);
        assert_eq!(
            message,
            "credentials[0]: Secret missing not found, or not annotated lgtm.coordinated.dev/tenant: t; credentials[1]: Secret no-password has no key password; credentials[2]: key token of Secret short: a token is 32 to 512 characters of A-Z a-z 0-9 - . _ ~ + / =; credentials[3]: key username of Secret bad-user: a username is 1 to 64 characters of A-Z a-z 0-9 . _ @ -"
        );
        assert!(!message.contains("abc") && !message.contains("a\"b"));
    }

    #[test]
    fn a_single_tenant_cluster_has_no_auth_files_but_keeps_limits() {
        let tenants = [tenant(
            "t",
            "2026-01-01T00:00:00Z",
            "credentials:\n- basicAuth: {secretName: alice}\nlimits: {ingestionRate: 1000}",
        )];
        let plan = plan(
            &fixtures::minimal_cluster(Product::Mimir),
            &tenants,
            &owned(&tenants),
            KEY,
        );
        assert_eq!(plan.auth, None);
        assert_eq!(outcome(&plan, "t").served, 0);
        assert_eq!(plan.entries.len(), 1);
    }

    #[test]
    fn loki_retention_is_whole_days() {
        let tenants = [tenant(
            "t",
            "2026-01-01T00:00:00Z",
            "limits: {retention: 36h}",
        )];
        let loki = plan(
            &multi_tenant(Product::Loki),
            &tenants,
            &owned(&tenants),
            KEY,
        );
        assert_eq!(
            outcome(&loki, "t").problem,
            Some((
                Reason::InvalidLimits,
                "limits.retention: Loki keeps data by whole days, not 36h".into()
            ))
        );
        let tempo = plan(
            &multi_tenant(Product::Tempo),
            &tenants,
            &owned(&tenants),
            KEY,
        );
        assert_eq!(outcome(&tempo, "t").problem, None);
        assert!(tempo.any_retention());
    }

    #[test]
    fn a_tenant_cannot_borrow_a_secret_annotated_for_another() {
        let tenants = [
            tenant(
                "owner",
                "2026-02-01T00:00:00Z",
                "credentials:\n- basicAuth: {secretName: alice}",
            ),
            tenant(
                "thief",
                "2026-01-01T00:00:00Z",
                "credentials:\n- basicAuth: {secretName: alice}",
            ),
        ];
        let mut secrets = owned(&tenants[..1]);
        let borrowed = plan(&multi_tenant(Product::Loki), &tenants, &secrets, KEY);
        assert_eq!(
            outcome(&borrowed, "owner").served,
            1,
            "the older Tenant cannot take it"
        );
        assert_eq!(
            outcome(&borrowed, "thief").problem,
            Some((
                Reason::SecretNotFound,
                "credentials[0]: Secret alice not found, or not annotated lgtm.coordinated.dev/tenant: thief".into()
            ))
        );
        secrets.remove("alice");
        let gone = plan(&multi_tenant(Product::Loki), &tenants, &secrets, KEY);
        assert_eq!(
            outcome(&gone, "thief").problem,
            outcome(&borrowed, "thief").problem,
            "a missing Secret and another's read the same"
        );
    }

    #[test]
    fn usernames_that_differ_only_by_case_are_one_username() {
        let mut secrets = secrets();
        secrets.extend([secret("upper", &[("username", "ALICE"), ("password", "x")])]);
        let tenants = [
            tenant(
                "a",
                "2026-01-01T00:00:00Z",
                "credentials:\n- basicAuth: {secretName: alice}",
            ),
            tenant(
                "b",
                "2026-01-02T00:00:00Z",
                "credentials:\n- basicAuth: {secretName: upper}",
            ),
        ];
        for (name, owner) in [("alice", "a"), ("upper", "b")] {
            if let Some(Some(s)) = secrets.get_mut(name) {
                s.metadata.annotations =
                    Some([(TENANT_ANNOTATION.to_string(), owner.to_string())].into());
            }
        }
        let plan = plan(&multi_tenant(Product::Loki), &tenants, &secrets, KEY);
        assert_eq!(
            outcome(&plan, "b").problem.as_ref().map(|p| p.0),
            Some(Reason::DuplicateCredential)
        );
    }

    #[test]
    fn the_auth_secrets_key_is_kept_once_it_exists() {
        let tenants = [tenant(
            "a",
            "2026-01-01T00:00:00Z",
            "credentials:\n- basicAuth: {secretName: alice}",
        )];
        let cluster = multi_tenant(Product::Loki);
        let mut secrets = owned(&tenants);
        let first = plan(&cluster, &tenants, &secrets, KEY).auth.expect("auth");
        assert_eq!(first.key, KEY);
        let stored = b"a key stored in the auth Secret, 32+ bytes".to_vec();
        let (name, mut auth_secret) = secret(
            "metrics-gateway-auth",
            &[(AUTH_KEY, std::str::from_utf8(&stored).expect("utf-8"))],
        );
        // Someone else's Secret of that name: its key is not taken.
        secrets.insert(name.clone(), auth_secret.clone());
        let fresh = b"another fresh key, 32 bytes long";
        let planted = plan(&cluster, &tenants, &secrets, fresh)
            .auth
            .expect("auth");
        assert_eq!(planted.key, fresh);
        // The operator's own: kept.
        if let Some(s) = auth_secret.as_mut() {
            s.metadata.owner_references = Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    controller: Some(true),
                    uid: cluster.uid().expect("uid"),
                    ..Default::default()
                },
            ]);
        }
        secrets.insert(name, auth_secret);
        let again = plan(&cluster, &tenants, &secrets, fresh)
            .auth
            .expect("auth");
        assert_eq!(again.key, stored);
        assert_ne!(again.htpasswd, first.htpasswd, "the salt follows the key");
    }

    fn gateway(
        annotation: Option<&str>,
        generation: i64,
        observed: i64,
        updated: i32,
    ) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "g", "generation": generation},
            "spec": {
                "replicas": 2,
                "selector": {},
                "template": {"metadata": {"annotations": annotation.map(|a| serde_json::json!({CREDENTIALS_CHECKSUM: a}))}},
            },
            "status": {"observedGeneration": observed, "replicas": 2, "updatedReplicas": updated, "availableReplicas": 2},
        }))
        .expect("a Deployment")
    }

    #[test]
    fn credentials_are_live_once_every_gateway_pod_runs_them() {
        let want = gateway(Some("abc"), 1, 0, 0);
        assert!(gateway_serves(&gateway(Some("abc"), 3, 3, 2), &want));
        assert!(
            !gateway_serves(&gateway(Some("abc"), 3, 2, 2), &want),
            "not seen"
        );
        assert!(
            !gateway_serves(&gateway(Some("abc"), 3, 3, 1), &want),
            "rolling"
        );
        assert!(
            !gateway_serves(&gateway(Some("old"), 3, 3, 2), &want),
            "not applied"
        );
        let single_tenant = gateway(None, 1, 0, 0);
        assert!(gateway_serves(&gateway(None, 3, 3, 2), &single_tenant));
    }

    /// Every reason a Tenant's Ready can give.
    pub(crate) fn reached() -> Vec<Reason> {
        let served = TenantOutcome {
            name: "t".into(),
            tenant_id: "t".into(),
            served: 1,
            problem: None,
        };
        let mut reasons = vec![
            ready(&served, true, true).reason,
            ready(&served, true, false).reason,
            ready(&served, false, true).reason,
        ];
        let tenants = [
            tenant(
                "a",
                "2026-01-01T00:00:00Z",
                "credentials:\n- basicAuth: {secretName: alice}",
            ),
            tenant(
                "b",
                "2026-01-02T00:00:00Z",
                "credentials:\n- basicAuth: {secretName: alice-again}",
            ),
            tenant("c", "2026-01-03T00:00:00Z", "id: a"),
            tenant(
                "d",
                "2026-01-04T00:00:00Z",
                "credentials:\n- bearerToken: {secretName: short}",
            ),
            tenant("e", "2026-01-05T00:00:00Z", "limits: {retention: 1x}"),
            tenant(
                "f",
                "2026-01-06T00:00:00Z",
                "credentials:\n- bearerToken: {secretName: none}",
            ),
            tenant(
                "g",
                "2026-01-07T00:00:00Z",
                "credentials:\n- basicAuth: {secretName: no-password}",
            ),
            tenant(
                "h".repeat(151).as_str(),
                "2026-01-08T00:00:00Z",
                "limits: {}",
            ),
        ];
        let plan = plan_again(&tenants);
        reasons.extend(plan.outcomes.iter().map(|o| ready(o, true, true).reason));
        reasons.push(without_cluster(&tenants[0]).reason);
        reasons
    }

    #[test]
    fn a_tenant_without_its_cluster_names_the_cluster_and_namespace() {
        let observed = without_cluster(&tenant("a", "2026-01-01T00:00:00Z", "limits: {}"));
        assert_eq!(
            (observed.type_, observed.status, observed.reason),
            (READY, false, Reason::ClusterNotFound)
        );
        assert_eq!(
            observed.message,
            "GrafanaCluster \"metrics\" does not exist in namespace obs: create it, or recreate this Tenant with the right clusterRef"
        );
    }

    #[test]
    fn each_problem_has_its_reason() {
        let reasons = reached();
        for reason in [
            Reason::CredentialsLive,
            Reason::CredentialsRollingOut,
            Reason::SingleTenantCluster,
            Reason::DuplicateCredential,
            Reason::DuplicateTenantId,
            Reason::InvalidTenantId,
            Reason::InvalidCredential,
            Reason::InvalidLimits,
            Reason::SecretNotFound,
            Reason::SecretKeyMissing,
            Reason::ClusterNotFound,
        ] {
            assert!(reasons.contains(&reason), "{reason}");
        }
    }
}
