//! Writes: server-side apply with one field manager, and pruning of children that are
//! no longer wanted.

use std::collections::BTreeSet;
use std::fmt::Debug;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Context;
use super::children;
pub use super::children::Child;
use super::error::{Error, Result};
use crate::api::FIELD_MANAGER;

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
#[derive(Debug)]
pub struct Kept {
    /// The kind of the owner whose children these are.
    owner: String,
    names: BTreeSet<(String, String)>,
}

impl Kept {
    /// Nothing kept yet of the children of an object of kind `Owner`.
    pub fn of<Owner: Resource<DynamicType = ()>>() -> Self {
        Self {
            owner: Owner::kind(&()).into_owned(),
            names: BTreeSet::new(),
        }
    }

    /// Keeps `object`.
    pub fn add<K: Resource<DynamicType = ()>>(&mut self, object: &K) {
        self.add_named::<K>(object.name_any());
    }

    /// Keeps the object of kind `K` named `name`, whether or not it was applied now.
    pub fn add_named<K: Resource<DynamicType = ()>>(&mut self, name: String) {
        self.names.insert((K::kind(&()).to_string(), name));
    }

    /// Keeps an object of a kind known only at run time.
    pub fn add_dynamic(&mut self, resource: &ApiResource, name: String) {
        self.names.insert((resource.kind.clone(), name));
    }

    fn names_of(&self, kind: &str) -> BTreeSet<String> {
        self.names
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, name)| name.clone())
            .collect()
    }
}

/// Applies `object` and keeps it. Not sent when nothing changed since the operator
/// last applied it (see [`super::children`]).
pub async fn apply_kept<K: Child>(ctx: &Context, kept: &mut Kept, object: &K) -> Result<()> {
    kept.add(object);
    let wanted = children::wanted(object);
    if ctx.children.unchanged(&kept.owner, object, wanted) {
        return Ok(());
    }
    let applied = apply(&ctx.client, object).await?;
    ctx.children.remember(&applied, wanted);
    Ok(())
}

/// [`apply_kept`], returning the object as the API server has it now: the applied
/// object, or when nothing had to be applied, the object read.
pub async fn apply_kept_read<K: Child>(ctx: &Context, kept: &mut Kept, object: &K) -> Result<K> {
    kept.add(object);
    let wanted = children::wanted(object);
    if ctx.children.unchanged(&kept.owner, object, wanted) {
        let namespace = object.namespace().unwrap_or_default();
        if let Some(live) = get_opt(&ctx.client, &namespace, &object.name_any()).await? {
            return Ok(live);
        }
    }
    let applied = apply(&ctx.client, object).await?;
    ctx.children.remember(&applied, wanted);
    Ok(applied)
}

/// Whose children to prune: those labelled `label` and controlled by `uid`.
pub struct Owner<'a> {
    pub namespace: &'a str,
    pub label: (&'a str, &'a str),
    pub uid: &'a str,
}

impl Owner<'_> {
    fn selector(&self) -> String {
        format!("{}={}", self.label.0, self.label.1)
    }

    fn controls(&self, meta: &kube::api::ObjectMeta) -> bool {
        meta.owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && o.uid == self.uid)
    }
}

/// Deletes the objects of kind `K` of `owner` that `kept` does not name, found in the
/// watch cache (listed before the caches have filled). Returns the names deleted.
pub async fn prune<K: Child>(ctx: &Context, owner: &Owner<'_>, kept: &Kept) -> Result<Vec<String>> {
    let api = Api::<K>::namespaced(ctx.client.clone(), owner.namespace);
    let keep = kept.names_of(K::kind(&()).as_ref());
    let existing = match ctx.cached_children::<K>(&kept.owner, owner.namespace, owner.label) {
        Some(cached) => cached.into_iter().map(|o| o.metadata).collect(),
        None => list_owned(&api, owner).await?,
    };
    let deleted = delete_unkept(api, owner, &keep, existing).await?;
    for name in &deleted {
        ctx.children.forget::<K>(owner.namespace, name);
    }
    Ok(deleted)
}

/// [`prune`] for a kind known only at run time (a PrometheusRule): listed, uncached.
pub async fn prune_dynamic(
    client: &Client,
    resource: &ApiResource,
    owner: &Owner<'_>,
    kept: &Kept,
) -> Result<Vec<String>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), owner.namespace, resource);
    let existing = list_owned(&api, owner).await?;
    delete_unkept(api, owner, &kept.names_of(&resource.kind), existing).await
}

/// The metadata of the objects `api` serves that carry `owner`'s label.
async fn list_owned<K>(api: &Api<K>, owner: &Owner<'_>) -> Result<Vec<kube::api::ObjectMeta>>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let list = api
        .list_metadata(&ListParams::default().labels(&owner.selector()))
        .await
        .map_err(Error::read(api.resource_url().to_string()))?;
    Ok(list.items.into_iter().map(|o| o.metadata).collect())
}

/// Deletes those of `existing` that `owner` controls, `keep` does not name and are not
/// already being deleted.
async fn delete_unkept<K>(
    api: Api<K>,
    owner: &Owner<'_>,
    keep: &BTreeSet<String>,
    existing: Vec<kube::api::ObjectMeta>,
) -> Result<Vec<String>>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let kind = api.resource_url().to_string();
    let mut deleted = Vec::new();
    for meta in existing {
        let name = meta.name.clone().unwrap_or_default();
        if !owner.controls(&meta) || keep.contains(&name) || meta.deletion_timestamp.is_some() {
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
