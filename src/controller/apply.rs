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

/// Deletes the objects of kind `K` that carry `selector`, are controlled by the object
/// with `owner_uid`, and are not named in `keep`. Returns the names deleted.
pub async fn prune<K: Child>(
    client: &Client,
    namespace: &str,
    selector: &str,
    owner_uid: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>> {
    prune_in(
        Api::<K>::namespaced(client.clone(), namespace),
        selector,
        owner_uid,
        keep,
    )
    .await
}

/// [`prune`] for a kind known only at run time (a PrometheusRule).
pub async fn prune_dynamic(
    client: &Client,
    namespace: &str,
    resource: &ApiResource,
    selector: &str,
    owner_uid: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    prune_in(api, selector, owner_uid, keep).await
}

async fn prune_in<K>(
    api: Api<K>,
    selector: &str,
    owner_uid: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let kind = api.resource_url().to_string();
    let existing = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .map_err(Error::read(kind.clone()))?;
    let mut deleted = Vec::new();
    for object in existing {
        let name = object.name_any();
        let controlled = object
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && o.uid == owner_uid);
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

/// [`apply`] for a kind known only at run time (a PrometheusRule).
pub async fn apply_dynamic(
    client: &Client,
    object: &DynamicObject,
    resource: &ApiResource,
) -> Result<DynamicObject> {
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
