//! The SCIM service provider's operations on Users and Groups (RFC 7644 §3.3–§3.6), their
//! state in the store, and the Discourse calls each change causes.
//!
//! Every change runs under one lock per process and is written together with its relay jobs
//! in one store transaction ([`crate::store::LogoutStore::scim_apply`]), so a change is either
//! kept with all its Discourse effects queued, or not at all. The relay delivers the jobs with
//! retries (honouring `429 Retry-After`), across outages and restarts.
//!
//! A SCIM user becomes the claims object a login would carry ([`user_claims`]), and the
//! login's [`Mapper`] turns it into the DiscourseConnect payload, so `[mapping]`, `[groups]`
//! and `[access]` decide exactly as at login. What the bridge last did to each Discourse
//! account (synced payload digest, logged out, suspended) is kept by `external_id`, so a
//! repeated push changes nothing and a reactivation lifts the suspension it caused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::error::ScimError;
use super::filter::{self, Filter, get_ci};
use super::patch;
use super::schema::{self, ENTERPRISE_SCHEMA, Resource};
use super::{OnDeactivate, ScimConfig};
use crate::discourse::connect::{ConnectSecret, Field, Payload};
use crate::mapping::Mapper;
use crate::store::{LogoutStore, RelayJob, RelayReason, ScimKind, ScimWrite};

/// Where the service reads the mapping in force (it changes on configuration reload).
pub type MapperSource = Arc<dyn Fn() -> Arc<Mapper> + Send + Sync>;

/// Where the service reads the time.
pub type Now = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// One stored User or Group.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// The writable attributes with canonical names (no `id`, `meta`, `groups`, `password`).
    resource: Map<String, Value>,
    created: i64,
    modified: i64,
    version: u64,
    /// Users: the `external_id` of the last payload the mapping produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
}

/// What the bridge last did to one Discourse account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Account {
    /// SHA-256 (hex) of the last payload queued for sync_sso.
    #[serde(default)]
    synced: Option<String>,
    /// Logged out because deactivated, deleted or denied.
    #[serde(default)]
    deactivated: bool,
    /// Suspended by the bridge (lifted when the user is active again).
    #[serde(default)]
    suspended: bool,
}

/// The SCIM operations; cheap to share behind an `Arc`.
pub struct ScimService {
    config: ScimConfig,
    store: Arc<dyn LogoutStore>,
    mapper: MapperSource,
    secret: Arc<ConnectSecret>,
    /// Wakes the relay worker after jobs were queued.
    wake: Arc<dyn Fn() + Send + Sync>,
    now: Now,
    /// `https://bridge.example/scim/v2`, for `meta.location`.
    base_url: String,
    write_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ScimService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimService")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// One page of a list (RFC 7644 §3.4.2.4).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub total: usize,
    pub start_index: usize,
    pub resources: Vec<Value>,
}

fn store_error(error: crate::store::StoreError) -> ScimError {
    tracing::error!(%error, "SCIM: the store failed");
    metrics::counter!("bridge_store_errors_total", "operation" => "scim").increment(1);
    ScimError::unavailable()
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ScimError> {
    serde_json::from_str(text).map_err(|error| {
        tracing::error!(%error, "SCIM: unreadable record in the store");
        ScimError::unavailable()
    })
}

fn encode<T: Serialize>(value: &T) -> Result<String, ScimError> {
    serde_json::to_string(value).map_err(|_| ScimError::unavailable())
}

fn kind_of(resource: Resource) -> ScimKind {
    match resource {
        Resource::User => ScimKind::User,
        Resource::Group => ScimKind::Group,
    }
}

fn timestamp(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The weak ETag of a version (RFC 7644 §3.14).
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

impl ScimService {
    /// A service over `store`; `public_url` is the bridge's base URL.
    pub fn new(
        config: ScimConfig,
        store: Arc<dyn LogoutStore>,
        mapper: MapperSource,
        secret: Arc<ConnectSecret>,
        wake: Arc<dyn Fn() + Send + Sync>,
        now: Now,
        public_url: &url::Url,
    ) -> Self {
        let base_url = format!("{}/scim/v2", public_url.as_str().trim_end_matches('/'));
        Self {
            config,
            store,
            mapper,
            secret,
            wake,
            now,
            base_url,
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> &ScimConfig {
        &self.config
    }

    /// The SCIM base URL (`…/scim/v2`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn load(&self, resource: Resource, id: &str) -> Result<Option<Record>, ScimError> {
        match self
            .store
            .scim_get(kind_of(resource), id)
            .await
            .map_err(store_error)?
        {
            Some(text) => Ok(Some(decode(&text)?)),
            None => Ok(None),
        }
    }

    async fn load_all(&self, resource: Resource) -> Result<Vec<(String, Record)>, ScimError> {
        let rows = self
            .store
            .scim_list(kind_of(resource))
            .await
            .map_err(store_error)?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, text) in rows {
            out.push((id, decode(&text)?));
        }
        Ok(out)
    }

    /// `(group id, displayName)` of every group holding `user_id`.
    fn groups_of<'g>(groups: &'g [(String, Record)], user_id: &str) -> Vec<(&'g str, &'g str)> {
        groups
            .iter()
            .filter(|(_, group)| member_ids(&group.resource).contains(user_id))
            .map(|(id, group)| {
                let name = group
                    .resource
                    .get("displayName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                (id.as_str(), name)
            })
            .collect()
    }

    /// The resource as served: `id`, `schemas`, `meta`, its attributes, and for users the
    /// read-only `groups`.
    fn render(
        &self,
        resource: Resource,
        id: &str,
        record: &Record,
        groups: Option<&[(String, Record)]>,
    ) -> Value {
        let mut out = Map::new();
        out.insert(
            "schemas".into(),
            schema::schemas_of(resource, &record.resource),
        );
        out.insert("id".into(), id.into());
        for (key, value) in &record.resource {
            out.insert(key.clone(), value.clone());
        }
        if resource == Resource::User
            && let Some(groups) = groups
        {
            let list: Vec<Value> = Self::groups_of(groups, id)
                .into_iter()
                .map(|(gid, name)| {
                    json!({
                        "value": gid,
                        "display": name,
                        "$ref": format!("{}/Groups/{gid}", self.base_url),
                        "type": "direct",
                    })
                })
                .collect();
            if !list.is_empty() {
                out.insert("groups".into(), Value::Array(list));
            }
        }
        out.insert(
            "meta".into(),
            json!({
                "resourceType": resource.name(),
                "created": timestamp(record.created),
                "lastModified": timestamp(record.modified),
                "location": format!("{}/{}/{id}", self.base_url, resource.endpoint()),
                "version": etag(record.version),
            }),
        );
        Value::Object(out)
    }

    /// `GET /Users/{id}` or `GET /Groups/{id}`: the resource and its version.
    pub async fn get(&self, resource: Resource, id: &str) -> Result<(Value, u64), ScimError> {
        let record = self
            .load(resource, id)
            .await?
            .ok_or_else(|| ScimError::not_found(format!("no {} with this id", resource.name())))?;
        let groups = match resource {
            Resource::User => Some(self.load_all(Resource::Group).await?),
            Resource::Group => None,
        };
        Ok((
            self.render(resource, id, &record, groups.as_deref()),
            record.version,
        ))
    }

    /// `GET /Users` or `GET /Groups` with an optional filter; `start_index` is 1-based.
    pub async fn list(
        &self,
        resource: Resource,
        filter: Option<&Filter>,
        start_index: usize,
        count: usize,
    ) -> Result<Page, ScimError> {
        let records = self.load_all(resource).await?;
        let groups = match resource {
            Resource::User => Some(self.load_all(Resource::Group).await?),
            Resource::Group => None,
        };
        let mut matching = Vec::new();
        for (id, record) in &records {
            let rendered = self.render(resource, id, record, groups.as_deref());
            if filter.is_none_or(|f| filter::matches(f, &rendered)) {
                matching.push(rendered);
            }
        }
        let total = matching.len();
        let start_index = start_index.max(1);
        let resources = matching
            .into_iter()
            .skip(start_index - 1)
            .take(count.min(self.config.max_results))
            .collect();
        Ok(Page {
            total,
            start_index,
            resources,
        })
    }

    /// `POST /Users` or `POST /Groups`.
    pub async fn create(
        &self,
        resource: Resource,
        body: &Value,
    ) -> Result<(Value, u64), ScimError> {
        let attributes = schema::canonical_resource(resource, body)?;
        let _guard = self.write_lock.lock().await;
        let now = (self.now)().timestamp_millis();
        let id = new_id();
        let record = Record {
            resource: attributes,
            created: now,
            modified: now,
            version: 1,
            external_id: None,
        };
        self.commit(resource, "create", &id, None, Some(record))
            .await
    }

    /// `PUT /Users/{id}` or `PUT /Groups/{id}`.
    pub async fn replace(
        &self,
        resource: Resource,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<(Value, u64), ScimError> {
        let attributes = schema::canonical_resource(resource, body)?;
        let _guard = self.write_lock.lock().await;
        let before = self.existing(resource, id, if_match).await?;
        let mut after = before.clone();
        after.resource = attributes;
        self.commit(resource, "replace", id, Some(before), Some(after))
            .await
    }

    /// `PATCH /Users/{id}` or `PATCH /Groups/{id}`.
    pub async fn patch(
        &self,
        resource: Resource,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<(Value, u64), ScimError> {
        let operations = patch::parse_request(resource, body)?;
        let _guard = self.write_lock.lock().await;
        let before = self.existing(resource, id, if_match).await?;
        let mut after = before.clone();
        patch::apply(resource, &mut after.resource, &operations)?;
        // The result must be a valid resource, exactly as a PUT body would be.
        let mut full = after.resource.clone();
        full.insert(
            "schemas".into(),
            schema::schemas_of(resource, &after.resource),
        );
        after.resource = schema::canonical_resource(resource, &Value::Object(full))?;
        self.commit(resource, "patch", id, Some(before), Some(after))
            .await
    }

    /// `DELETE /Users/{id}` or `DELETE /Groups/{id}`.
    pub async fn delete(
        &self,
        resource: Resource,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), ScimError> {
        let _guard = self.write_lock.lock().await;
        let before = self.existing(resource, id, if_match).await?;
        self.commit(resource, "delete", id, Some(before), None)
            .await
            .map(|_| ())
    }

    async fn existing(
        &self,
        resource: Resource,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<Record, ScimError> {
        let record = self
            .load(resource, id)
            .await?
            .ok_or_else(|| ScimError::not_found(format!("no {} with this id", resource.name())))?;
        if let Some(expected) = if_match
            && expected.trim() != "*"
            && !expected
                .split(',')
                .any(|tag| tag.trim() == etag(record.version))
        {
            return Err(ScimError::precondition_failed());
        }
        Ok(record)
    }

    /// Checks uniqueness, computes the Discourse effects of the change and writes the record,
    /// the account states and the jobs in one transaction.
    async fn commit(
        &self,
        resource: Resource,
        operation: &'static str,
        id: &str,
        before: Option<Record>,
        after: Option<Record>,
    ) -> Result<(Value, u64), ScimError> {
        let now = (self.now)();
        let mut after = after;
        if let (Some(after), Some(before)) = (after.as_mut(), before.as_ref()) {
            after.created = before.created;
            after.version = before.version.saturating_add(1);
            after.modified = now.timestamp_millis().max(before.modified);
        }
        let users = self.load_all(Resource::User).await?;
        let mut groups = self.load_all(Resource::Group).await?;

        if resource == Resource::User
            && let Some(after) = &after
        {
            let name = after
                .resource
                .get("userName")
                .and_then(Value::as_str)
                .unwrap_or("");
            let taken = users.iter().any(|(other, record)| {
                other != id
                    && record
                        .resource
                        .get("userName")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
            });
            if taken {
                return Err(ScimError::uniqueness("userName is already in use"));
            }
        }

        // Which users' Discourse state this change can move.
        let mut affected: BTreeSet<String> = BTreeSet::new();
        let mut user_records: BTreeMap<String, Record> = users.into_iter().collect();
        let mut before_external: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut writes = Vec::new();
        match resource {
            Resource::User => {
                affected.insert(id.to_owned());
                before_external.insert(
                    id.to_owned(),
                    before.as_ref().and_then(|b| b.external_id.clone()),
                );
                match &after {
                    Some(record) => {
                        user_records.insert(id.to_owned(), record.clone());
                    }
                    None => {
                        user_records.remove(id);
                        // The user leaves every group that held them.
                        for (group_id, group) in groups.iter_mut() {
                            if member_ids(&group.resource).contains(id) {
                                remove_member(&mut group.resource, id);
                                group.version = group.version.saturating_add(1);
                                group.modified = now.timestamp_millis().max(group.modified);
                                writes.push(ScimWrite {
                                    kind: ScimKind::Group,
                                    id: group_id.clone(),
                                    record: Some(encode(group)?),
                                });
                            }
                        }
                    }
                }
            }
            Resource::Group => {
                let old = before
                    .as_ref()
                    .map(|b| member_ids(&b.resource))
                    .unwrap_or_default();
                let new = after
                    .as_ref()
                    .map(|a| member_ids(&a.resource))
                    .unwrap_or_default();
                let renamed = before.as_ref().map(|b| b.resource.get("displayName"))
                    != after.as_ref().map(|a| a.resource.get("displayName"));
                for member in old.symmetric_difference(&new) {
                    affected.insert(member.clone());
                }
                if renamed {
                    affected.extend(old.intersection(&new).cloned());
                }
                groups.retain(|(group_id, _)| group_id != id);
                if let Some(record) = &after {
                    groups.push((id.to_owned(), record.clone()));
                }
            }
        }

        let mapper = (self.mapper)();
        let mut jobs = Vec::new();
        let mut accounts: BTreeMap<String, (Account, Account)> = BTreeMap::new();
        for user_id in &affected {
            // Members that are not users of this bridge have no Discourse state.
            let record = user_records.get(user_id).cloned();
            if record.is_none() && !(resource == Resource::User && user_id == id) {
                continue;
            }
            let previous_external = match &record {
                Some(r) => r.external_id.clone(),
                None => before_external.get(user_id).cloned().flatten(),
            }
            .or_else(|| before_external.get(user_id).cloned().flatten());
            let group_names: Vec<String> = Self::groups_of(&groups, user_id)
                .into_iter()
                .map(|(_, name)| name.to_owned())
                .collect();
            let external_id = self
                .plan_user(
                    &mapper,
                    user_id,
                    record.as_ref(),
                    previous_external,
                    &group_names,
                    &mut accounts,
                    &mut jobs,
                    now,
                )
                .await?;
            if let Some(mut record) = record
                && record.external_id != external_id
                && external_id.is_some()
            {
                record.external_id = external_id;
                if resource == Resource::User && user_id == id {
                    if let Some(after) = after.as_mut() {
                        after.external_id = record.external_id.clone();
                    }
                } else {
                    writes.push(ScimWrite {
                        kind: ScimKind::User,
                        id: user_id.clone(),
                        record: Some(encode(&record)?),
                    });
                }
            }
        }
        for (external_id, (old, new)) in &accounts {
            if old != new {
                writes.push(ScimWrite {
                    kind: ScimKind::Account,
                    id: external_id.clone(),
                    record: Some(encode(new)?),
                });
            }
        }
        writes.push(ScimWrite {
            kind: kind_of(resource),
            id: id.to_owned(),
            record: match &after {
                Some(record) => Some(encode(record)?),
                None => None,
            },
        });
        self.store
            .scim_apply(&writes, &jobs)
            .await
            .map_err(store_error)?;
        for job in &jobs {
            metrics::counter!("bridge_scim_jobs_queued_total", "kind" => job.reason.as_str())
                .increment(1);
        }
        if !jobs.is_empty() {
            (self.wake)();
        }
        tracing::info!(
            resource = resource.name(),
            operation,
            id,
            affected_users = affected.len(),
            jobs = jobs.len(),
            "SCIM change applied"
        );
        match after {
            Some(record) => {
                let rendered = self.render(
                    resource,
                    id,
                    &record,
                    (resource == Resource::User).then_some(groups.as_slice()),
                );
                Ok((rendered, record.version))
            }
            None => Ok((Value::Null, 0)),
        }
    }

    /// Decides what Discourse must do for one user after a change, appends the jobs and
    /// returns the user's `external_id` when known.
    #[allow(clippy::too_many_arguments)]
    async fn plan_user(
        &self,
        mapper: &Mapper,
        user_id: &str,
        record: Option<&Record>,
        previous_external: Option<String>,
        groups: &[String],
        accounts: &mut BTreeMap<String, (Account, Account)>,
        jobs: &mut Vec<RelayJob>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, ScimError> {
        let mut rendered = None;
        let active = record.is_some_and(|r| {
            r.resource
                .get("active")
                .and_then(schema::coerce_bool)
                .unwrap_or(true)
        });
        let mut desired: Option<Payload> = None;
        if let Some(record) = record {
            let mut full = record.resource.clone();
            full.insert("id".into(), user_id.into());
            let claims = user_claims(
                &self.config,
                mapper.group_claim(),
                &Value::Object(full),
                groups,
            );
            if active {
                match mapping_payload(mapper, &claims) {
                    Ok(payload) => desired = Some(payload),
                    Err(rule) => {
                        tracing::info!(
                            id = user_id,
                            rule,
                            "SCIM: the access policy denies this user; treated as deactivated"
                        );
                    }
                }
            }
            rendered = Some(claims);
        }
        let external_id = match &desired {
            Some(payload) => payload.get(Field::ExternalId).map(str::to_owned),
            None => previous_external.or_else(|| {
                rendered.as_ref().and_then(|claims| {
                    claims
                        .get(&self.config.subject_claim)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
            }),
        };
        let Some(external_id) = external_id else {
            tracing::warn!(
                id = user_id,
                attribute = %self.config.subject_attribute,
                "SCIM: the user has no value for the subject attribute; nothing sent to Discourse"
            );
            return Ok(None);
        };
        if !accounts.contains_key(&external_id) {
            let account: Account = match self
                .store
                .scim_get(ScimKind::Account, &external_id)
                .await
                .map_err(store_error)?
            {
                Some(text) => decode(&text)?,
                None => Account::default(),
            };
            accounts.insert(external_id.clone(), (account.clone(), account));
        }
        let Some((_, account)) = accounts.get_mut(&external_id) else {
            return Ok(Some(external_id));
        };
        match desired {
            Some(payload) => {
                if account.suspended {
                    jobs.push(RelayJob::new(
                        external_id.clone(),
                        RelayReason::ScimUnsuspend,
                        now,
                    ));
                    account.suspended = false;
                }
                let digest = hex::encode(Sha256::digest(payload.encode_query().as_bytes()));
                if account.deactivated || account.synced.as_deref() != Some(digest.as_str()) {
                    let signed = payload.sign(&self.secret);
                    let body = json!({"sso": signed.sso, "sig": signed.sig}).to_string();
                    jobs.push(
                        RelayJob::new(external_id.clone(), RelayReason::ScimSync, now)
                            .with_payload(body),
                    );
                }
                account.synced = Some(digest);
                account.deactivated = false;
            }
            None => {
                if !account.deactivated {
                    jobs.push(RelayJob::new(
                        external_id.clone(),
                        RelayReason::ScimLogOut,
                        now,
                    ));
                    account.deactivated = true;
                    account.synced = None;
                    if self.config.on_deactivate == OnDeactivate::Suspend {
                        let until = now
                            .checked_add_signed(
                                chrono::TimeDelta::from_std(self.config.suspend_for)
                                    .unwrap_or(chrono::TimeDelta::MAX),
                            )
                            .unwrap_or(DateTime::<Utc>::MAX_UTC);
                        let body = json!({
                            "until": until.to_rfc3339_opts(SecondsFormat::Secs, true),
                            "reason": self.config.suspend_reason,
                        })
                        .to_string();
                        jobs.push(
                            RelayJob::new(external_id.clone(), RelayReason::ScimSuspend, now)
                                .with_payload(body),
                        );
                        account.suspended = true;
                    }
                }
            }
        }
        Ok(Some(external_id))
    }
}

/// The mapped payload, or the rule that refused.
fn mapping_payload(mapper: &Mapper, claims: &Map<String, Value>) -> Result<Payload, String> {
    mapper
        .map(claims)
        .map(|mapped| mapped.payload)
        .map_err(|denial| denial.rule)
}

/// A new resource id: 128 random bits, hex.
fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The `value`s of a group's `members`.
fn member_ids(group: &Map<String, Value>) -> BTreeSet<String> {
    group
        .get("members")
        .and_then(Value::as_array)
        .map(|members| {
            members
                .iter()
                .filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn remove_member(group: &mut Map<String, Value>, user_id: &str) {
    if let Some(Value::Array(members)) = group.get_mut("members") {
        members.retain(|m| m.get("value").and_then(Value::as_str) != Some(user_id));
    }
}

/// The value of a SCIM attribute path in a user (`externalId`, `id`, `userName`,
/// `urn:…:enterprise:2.0:User:employeeNumber`, `name.givenName`).
pub fn attribute_value(user: &Value, path: &str) -> Option<String> {
    let path = filter::parse_attr_path(path).ok()?;
    let object = user.as_object()?;
    let container = match &path.uri {
        Some(uri) if uri.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) => {
            get_ci(object, ENTERPRISE_SCHEMA)?.as_object()?
        }
        _ => object,
    };
    let value = get_ci(container, &path.name)?;
    let value = match &path.sub {
        Some(sub) => get_ci(value.as_object()?, sub)?,
        None => value,
    };
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The element of a multi-valued attribute a login would call primary: `primary: true`, else
/// the first of type `work`, else the first.
fn primary<'v>(user: &'v Map<String, Value>, attribute: &str) -> Option<&'v Value> {
    let items = get_ci(user, attribute)?.as_array()?;
    items
        .iter()
        .find(|i| i.get("primary").and_then(schema::coerce_bool) == Some(true))
        .or_else(|| {
            items
                .iter()
                .find(|i| i.get("type").and_then(Value::as_str) == Some("work"))
        })
        .or_else(|| items.first())
}

/// Sets `value` at a dotted claim path, creating objects on the way.
fn set_claim(claims: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut current = claims;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_owned(), value);
            return;
        }
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Some(next) = entry.as_object_mut() else {
            return;
        };
        current = next;
    }
}

/// The claims object a login with this user would carry (docs/scim.md lists the keys):
/// `subject_claim` holds the configured subject attribute; `preferred_username`, `email`,
/// `email_verified`, `name`, `given_name`, `family_name`, `middle_name`, `nickname`, `locale`,
/// `zoneinfo`, `picture`, `profile` come from the standard attributes; `enterprise` holds the
/// Enterprise extension and `scim` the whole user; the group names go under `groups_claim`.
pub fn user_claims(
    config: &ScimConfig,
    groups_claim: &str,
    user: &Value,
    groups: &[String],
) -> Map<String, Value> {
    let mut claims = Map::new();
    let Some(object) = user.as_object() else {
        return claims;
    };
    let text = |key: &str| {
        get_ci(object, key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let name_part = |key: &str| {
        get_ci(object, "name")
            .and_then(Value::as_object)
            .and_then(|name| get_ci(name, key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let put = |claims: &mut Map<String, Value>, key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            claims.insert(key.to_owned(), Value::String(value));
        }
    };
    put(&mut claims, "preferred_username", text("userName"));
    put(
        &mut claims,
        "name",
        text("displayName").or_else(|| name_part("formatted")),
    );
    put(&mut claims, "given_name", name_part("givenName"));
    put(&mut claims, "family_name", name_part("familyName"));
    put(&mut claims, "middle_name", name_part("middleName"));
    put(&mut claims, "nickname", text("nickName"));
    put(
        &mut claims,
        "locale",
        text("locale").or_else(|| text("preferredLanguage")),
    );
    put(&mut claims, "zoneinfo", text("timezone"));
    put(&mut claims, "profile", text("profileUrl"));
    put(
        &mut claims,
        "picture",
        primary(object, "photos")
            .and_then(|p| p.get("value"))
            .and_then(Value::as_str)
            .map(str::to_owned),
    );
    if let Some(email) = primary(object, "emails")
        .and_then(|e| e.get("value"))
        .and_then(Value::as_str)
    {
        claims.insert("email".into(), email.into());
        claims.insert("email_verified".into(), config.email_verified.into());
    }
    if let Some(enterprise) = get_ci(object, ENTERPRISE_SCHEMA) {
        claims.insert("enterprise".into(), enterprise.clone());
    }
    claims.insert("scim".into(), user.clone());
    set_claim(
        &mut claims,
        groups_claim,
        Value::Array(groups.iter().map(|g| Value::String(g.clone())).collect()),
    );
    if let Some(subject) = attribute_value(user, &config.subject_attribute) {
        set_claim(&mut claims, &config.subject_claim, Value::String(subject));
    }
    claims
}

/// Whether a JSON document is a SCIM User (its `schemas` name the core User schema).
pub fn is_scim_user(document: &Map<String, Value>) -> bool {
    get_ci(document, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|schemas| {
            schemas.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(schema::USER_SCHEMA))
            })
        })
}

/// For `explain`: the claims of a SCIM User document (as pushed, or as `GET` returns it, whose
/// `groups` give the group names).
pub fn explain_claims(config: &ScimConfig, groups_claim: &str, user: &Value) -> Map<String, Value> {
    let groups: Vec<String> = user
        .get("groups")
        .and_then(Value::as_array)
        .map(|groups| {
            groups
                .iter()
                .filter_map(|g| g.get("display").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    user_claims(config, groups_claim, user, &groups)
}
