//! Writes: server-side apply with one field manager, and pruning of children that are
//! no longer wanted.

use std::collections::BTreeSet;
use std::fmt::Debug;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{Error, Result};
use crate::api::FIELD_MANAGER;

/// Kinds the operator applies and prunes.
pub trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Child for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Applies `object` (server-side, forced: the operator owns every field it sets, and a
/// manual edit of one is reverted). An unchanged object is not written by the API server.
pub async fn apply<K: Child>(client: &Client, object: &K) -> Result<K> {
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: K::kind(&()).to_string(),
        name,
        source,
    })
}

/// The children a reconcile wants, by kind and name: pruning deletes the others. Keyed
/// by kind too, since children of different kinds share names (the gateway's
/// ConfigMap, Service and PodDisruptionBudget are all `<c>-gateway`).
#[derive(Debug, Default)]
pub struct Kept(BTreeSet<(String, String)>);

impl Kept {
    /// Keeps `object`.
    pub fn add<K: Resource<DynamicType = ()>>(&mut self, object: &K) {
        self.add_named::<K>(object.name_any());
    }

    /// Keeps the object of kind `K` named `name`, whether or not it was applied now.
    pub fn add_named<K: Resource<DynamicType = ()>>(&mut self, name: String) {
        self.0.insert((K::kind(&()).to_string(), name));
    }

    /// Keeps an object of a kind known only at run time.
    pub fn add_dynamic(&mut self, resource: &ApiResource, name: String) {
        self.0.insert((resource.kind.clone(), name));
    }

    fn names_of(&self, kind: &str) -> BTreeSet<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, name)| name.clone())
            .collect()
    }
}

/// Applies `object` and keeps it.
pub async fn apply_kept<K: Child>(client: &Client, kept: &mut Kept, object: &K) -> Result<K> {
    let applied = apply(client, object).await?;
    kept.add(&applied);
    Ok(applied)
}

/// Whose children to prune: those carrying `selector` and controlled by `owner_uid`.
pub struct Owner<'a> {
    pub namespace: &'a str,
    pub selector: &'a str,
    pub uid: &'a str,
}

/// Deletes the objects of kind `K` of `owner` that `kept` does not name. Returns the
/// names deleted.
pub async fn prune<K: Child>(
    client: &Client,
    owner: &Owner<'_>,
    kept: &Kept,
) -> Result<Vec<String>> {
    let api = Api::<K>::namespaced(client.clone(), owner.namespace);
    prune_in(api, owner, &kept.names_of(K::kind(&()).as_ref())).await
}

/// [`prune`] for a kind known only at run time (a PrometheusRule).
pub async fn prune_dynamic(
    client: &Client,
    resource: &ApiResource,
    owner: &Owner<'_>,
    kept: &Kept,
) -> Result<Vec<String>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), owner.namespace, resource);
    prune_in(api, owner, &kept.names_of(&resource.kind)).await
}

async fn prune_in<K>(api: Api<K>, owner: &Owner<'_>, keep: &BTreeSet<String>) -> Result<Vec<String>>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let kind = api.resource_url().to_string();
    let existing = api
        .list_metadata(&ListParams::default().labels(owner.selector))
        .await
        .map_err(Error::read(kind.clone()))?;
    let mut deleted = Vec::new();
    for object in existing {
        let name = object.name_any();
        let controlled = object
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && o.uid == owner.uid);
        if !controlled || keep.contains(&name) || object.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(name),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(Error::Delete {
                    kind: kind.clone(),
                    name,
                    source,
                });
            }
        }
    }
    Ok(deleted)
}

/// [`apply`] for a kind known only at run time (a PrometheusRule); keeps it.
pub async fn apply_dynamic(
    client: &Client,
    kept: &mut Kept,
    object: &DynamicObject,
    resource: &ApiResource,
) -> Result<DynamicObject> {
    kept.add_dynamic(resource, object.name_any());
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, resource);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: resource.kind.clone(),
        name,
        source,
    })
}

/// Reads an object, `None` when it does not exist.
pub async fn get_opt<K: Child>(client: &Client, namespace: &str, name: &str) -> Result<Option<K>> {
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(Error::read(format!("{} {namespace}/{name}", K::kind(&()))))
}

/// Writes an object's whole status with server-side apply, so fields no longer set are
/// removed. An object deleted meanwhile has no one left to report to: not an error.
pub async fn apply_status<K: Child>(
    client: &Client,
    object: &K,
    status: &impl Serialize,
) -> Result<()> {
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let result = api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(Error::Status { name, source }),
    }
}
