//! SCIM PATCH (RFC 7644 §3.5.2): parses a `PatchOp` message and applies its operations to a
//! resource held as canonical JSON, then leaves validation of the result to the schema.
//!
//! Beyond the RFC, the habits of real clients are accepted: capitalised operation names
//! (`Replace`, Entra ID), booleans as strings (`"False"`), path-less `replace` whose value
//! uses dotted or URN-prefixed keys (`name.givenName`), and `remove` of `members` with a list
//! of the members to drop (Entra ID, authentik).

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{self, AttrPath, PatchPath, get_ci};
use super::schema::{self, Attr, Mutability, PATCH_SCHEMA, Resource};

/// Most operations accepted in one request.
pub const MAX_OPERATIONS: usize = 1000;

/// `add`, `remove` or `replace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

/// One operation of a PATCH request.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub kind: OpKind,
    pub path: Option<PatchPath>,
    /// The raw path text when it named the extension schema itself.
    pub extension_path: bool,
    pub value: Option<Value>,
}

/// Parses a PATCH body: `schemas` names the PatchOp message, `Operations` holds 1 to
/// [`MAX_OPERATIONS`] operations.
pub fn parse_request(resource: Resource, body: &Value) -> Result<Vec<Operation>, ScimError> {
    let Value::Object(body) = body else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    match get_ci(body, "schemas") {
        Some(Value::Array(schemas))
            if schemas.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_SCHEMA))
            }) => {}
        _ => {
            return Err(ScimError::invalid_syntax(format!(
                "schemas must list {PATCH_SCHEMA}"
            )));
        }
    }
    let Some(Value::Array(operations)) = get_ci(body, "Operations") else {
        return Err(ScimError::invalid_syntax("Operations must be an array"));
    };
    if operations.is_empty() || operations.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_syntax(format!(
            "Operations must hold 1 to {MAX_OPERATIONS} operations"
        )));
    }
    let mut out = Vec::with_capacity(operations.len());
    for operation in operations {
        let Value::Object(operation) = operation else {
            return Err(ScimError::invalid_syntax(
                "each operation must be an object",
            ));
        };
        let kind = match get_ci(operation, "op").and_then(Value::as_str) {
            Some(op) if op.eq_ignore_ascii_case("add") => OpKind::Add,
            Some(op) if op.eq_ignore_ascii_case("remove") => OpKind::Remove,
            Some(op) if op.eq_ignore_ascii_case("replace") => OpKind::Replace,
            _ => {
                return Err(ScimError::invalid_syntax(
                    "op must be add, remove or replace",
                ));
            }
        };
        let (path, extension_path) = match get_ci(operation, "path") {
            None | Some(Value::Null) => (None, false),
            Some(Value::String(text)) if text.trim().is_empty() => (None, false),
            Some(Value::String(text)) => {
                let extension = resource
                    .extension()
                    .is_some_and(|(urn, _)| text.trim().eq_ignore_ascii_case(urn));
                if extension {
                    (None, true)
                } else {
                    let path = filter::parse_path(text)
                        .map_err(|e| ScimError::invalid_path(format!("path: {e}")))?;
                    (Some(path), false)
                }
            }
            Some(_) => return Err(ScimError::invalid_path("path must be a string")),
        };
        let value = get_ci(operation, "value").cloned();
        if kind != OpKind::Remove && value.is_none() {
            return Err(ScimError::invalid_syntax("add and replace need a value"));
        }
        out.push(Operation {
            kind,
            path,
            extension_path,
            value,
        });
    }
    Ok(out)
}

/// The attribute a path names.
struct Target {
    /// The extension schema holding the attribute, `None` for the core schema.
    extension: Option<&'static str>,
    attr: &'static Attr,
    sub: Option<&'static Attr>,
}

const EXTERNAL_ID: Attr = Attr {
    name: "externalId",
    kind: schema::Kind::String,
    multi: false,
    required: false,
    case_exact: true,
    mutability: Mutability::ReadWrite,
    unique: false,
    subs: &[],
    description: "The client's id for the resource.",
};

fn resolve(resource: Resource, path: &AttrPath) -> Result<Target, ScimError> {
    let (extension, attrs) = match &path.uri {
        None => (None, resource.attrs()),
        Some(uri) if uri.eq_ignore_ascii_case(resource.core_schema()) => (None, resource.attrs()),
        Some(uri) => match resource.extension() {
            Some((urn, attrs)) if uri.eq_ignore_ascii_case(urn) => (Some(urn), attrs),
            _ => {
                return Err(ScimError::invalid_path(format!(
                    "{uri} is not a schema of this resource"
                )));
            }
        },
    };
    let attr = if extension.is_none() && path.name.eq_ignore_ascii_case("externalId") {
        &EXTERNAL_ID
    } else if extension.is_none()
        && ["id", "meta", "schemas"]
            .iter()
            .any(|n| path.name.eq_ignore_ascii_case(n))
    {
        return Err(ScimError::mutability(format!("{} is read-only", path.name)));
    } else {
        schema::find(attrs, &path.name).ok_or_else(|| {
            ScimError::invalid_path(format!("{} is not an attribute of the schema", path.name))
        })?
    };
    if attr.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!("{} is read-only", attr.name)));
    }
    let sub = match &path.sub {
        None => None,
        Some(sub) => Some(schema::find(attr.subs, sub).ok_or_else(|| {
            ScimError::invalid_path(format!(
                "{}.{sub} is not an attribute of the schema",
                attr.name
            ))
        })?),
    };
    Ok(Target {
        extension,
        attr,
        sub,
    })
}

/// Applies `operations` in order to `object` (canonical attributes of one resource). On an
/// error the object may be half-changed: callers work on a copy.
pub fn apply(
    resource: Resource,
    object: &mut Map<String, Value>,
    operations: &[Operation],
) -> Result<(), ScimError> {
    for operation in operations {
        apply_one(resource, object, operation)?;
    }
    if let Some((urn, _)) = resource.extension()
        && object
            .get(urn)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        object.remove(urn);
    }
    Ok(())
}

fn apply_one(
    resource: Resource,
    object: &mut Map<String, Value>,
    operation: &Operation,
) -> Result<(), ScimError> {
    let value = operation.value.as_ref();
    let Some(path) = &operation.path else {
        if operation.kind == OpKind::Remove {
            if operation.extension_path
                && let Some((urn, _)) = resource.extension()
            {
                object.remove(urn);
                return Ok(());
            }
            return Err(ScimError::no_target("remove needs a path"));
        }
        let Some(Value::Object(values)) = value else {
            return Err(ScimError::invalid_value(
                "an add or replace without a path needs an object value",
            ));
        };
        if operation.extension_path {
            let urn = resource.extension().map(|(urn, _)| urn).unwrap_or_default();
            return apply_extension_object(resource, object, operation.kind, urn, values);
        }
        for (key, item) in values {
            if ["schemas", "id", "meta"]
                .iter()
                .any(|k| key.eq_ignore_ascii_case(k))
            {
                continue;
            }
            if let Some((urn, _)) = resource.extension()
                && key.eq_ignore_ascii_case(urn)
            {
                let Value::Object(inner) = item else {
                    return Err(ScimError::invalid_value(format!("{urn} must be an object")));
                };
                apply_extension_object(resource, object, operation.kind, urn, inner)?;
                continue;
            }
            let attr = filter::parse_attr_path(key)
                .map_err(|e| ScimError::invalid_path(format!("{key}: {e}")))?;
            let path = PatchPath { attr, filter: None };
            apply_path(resource, object, operation.kind, &path, Some(item))?;
        }
        return Ok(());
    };
    apply_path(resource, object, operation.kind, path, value)
}

fn apply_extension_object(
    resource: Resource,
    object: &mut Map<String, Value>,
    kind: OpKind,
    urn: &str,
    values: &Map<String, Value>,
) -> Result<(), ScimError> {
    for (key, item) in values {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let mut attr = filter::parse_attr_path(key)
            .map_err(|e| ScimError::invalid_path(format!("{key}: {e}")))?;
        attr.uri = Some(urn.to_owned());
        let path = PatchPath { attr, filter: None };
        apply_path(resource, object, kind, &path, Some(item))?;
    }
    Ok(())
}

fn container<'o>(
    object: &'o mut Map<String, Value>,
    extension: Option<&str>,
) -> Result<&'o mut Map<String, Value>, ScimError> {
    match extension {
        None => Ok(object),
        Some(urn) => {
            let entry = object
                .entry(urn.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            entry
                .as_object_mut()
                .ok_or_else(|| ScimError::invalid_value(format!("{urn} must be an object")))
        }
    }
}

/// Whether two elements of a multi-valued attribute are the same one: same `value` when they
/// have one, else equal.
fn same_element(a: &Value, b: &Value) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn merge_into(existing: &mut Value, incoming: Value) {
    match (existing.as_object_mut(), incoming) {
        (Some(map), Value::Object(incoming)) => {
            for (key, value) in incoming {
                map.insert(key, value);
            }
        }
        (_, incoming) => *existing = incoming,
    }
}

fn apply_path(
    resource: Resource,
    object: &mut Map<String, Value>,
    kind: OpKind,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let target = resolve(resource, &path.attr)?;
    let attr = target.attr;
    let name = attr.name;
    // A null value unassigns the attribute (RFC 7643 §2.5).
    let (kind, value) = match value {
        Some(Value::Null) if kind != OpKind::Remove => (OpKind::Remove, None),
        other => (kind, other),
    };
    let holder = container(object, target.extension)?;

    if let Some(element_filter) = &path.filter {
        if !attr.multi {
            return Err(ScimError::invalid_path(format!(
                "{name} is not multi-valued; a value filter does not apply"
            )));
        }
        let items = match holder.get_mut(name) {
            Some(Value::Array(items)) => items,
            _ if kind == OpKind::Remove => return Ok(()),
            _ => return Err(ScimError::no_target(format!("{name} has no values"))),
        };
        let hit = |item: &Value| filter::matches_element(element_filter, item, name);
        match kind {
            OpKind::Remove => match target.sub {
                None => items.retain(|item| !hit(item)),
                Some(sub) => {
                    for item in items.iter_mut().filter(|item| hit(item)) {
                        if let Some(map) = item.as_object_mut() {
                            map.remove(sub.name);
                        }
                    }
                }
            },
            OpKind::Add | OpKind::Replace => {
                let value = value.unwrap_or(&Value::Null);
                let mut matched = false;
                for item in items.iter_mut() {
                    if !hit(item) {
                        continue;
                    }
                    matched = true;
                    match target.sub {
                        Some(sub) => {
                            let canonical = schema::canonical_value(
                                sub,
                                value,
                                &format!("{name}.{}", sub.name),
                            )?;
                            if let Some(map) = item.as_object_mut() {
                                map.insert(sub.name.to_owned(), canonical);
                            }
                        }
                        None => {
                            let single = Attr {
                                multi: false,
                                ..*attr
                            };
                            let canonical = schema::canonical_value(&single, value, name)?;
                            merge_into(item, canonical);
                        }
                    }
                }
                if !matched {
                    return Err(ScimError::no_target(format!(
                        "no value of {name} matches the path's filter"
                    )));
                }
            }
        }
        return Ok(());
    }

    if let Some(sub) = target.sub {
        if attr.multi {
            match kind {
                OpKind::Remove => {
                    if let Some(Value::Array(items)) = holder.get_mut(name) {
                        for item in items.iter_mut() {
                            if let Some(map) = item.as_object_mut() {
                                map.remove(sub.name);
                            }
                        }
                    }
                    return Ok(());
                }
                _ => {
                    return Err(ScimError::invalid_path(format!(
                        "{name}.{} needs a value filter to say which {name} to change",
                        sub.name
                    )));
                }
            }
        }
        match kind {
            OpKind::Remove => {
                if let Some(Value::Object(map)) = holder.get_mut(name) {
                    map.remove(sub.name);
                }
            }
            OpKind::Add | OpKind::Replace => {
                let canonical = schema::canonical_value(
                    sub,
                    value.unwrap_or(&Value::Null),
                    &format!("{name}.{}", sub.name),
                )?;
                let entry = holder
                    .entry(name.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Some(map) = entry.as_object_mut() {
                    map.insert(sub.name.to_owned(), canonical);
                }
            }
        }
        return Ok(());
    }

    match kind {
        OpKind::Remove => {
            match (value, attr.multi) {
                // Entra ID and authentik: remove these members.
                (Some(listed), true) => {
                    let listed = schema::canonical_value(attr, listed, name)?;
                    let listed = listed.as_array().cloned().unwrap_or_default();
                    if let Some(Value::Array(items)) = holder.get_mut(name) {
                        items.retain(|item| !listed.iter().any(|l| same_element(item, l)));
                    }
                }
                _ => {
                    holder.remove(name);
                }
            }
        }
        OpKind::Add => {
            let canonical = schema::canonical_value(attr, value.unwrap_or(&Value::Null), name)?;
            if attr.multi {
                let entry = holder
                    .entry(name.to_owned())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !entry.is_array() {
                    *entry = Value::Array(Vec::new());
                }
                if let (Some(items), Value::Array(new)) = (entry.as_array_mut(), canonical) {
                    for item in new {
                        if let Some(existing) = items.iter_mut().find(|i| same_element(i, &item)) {
                            merge_into(existing, item);
                        } else {
                            items.push(item);
                        }
                    }
                }
            } else {
                match holder.get_mut(name) {
                    Some(existing) if attr.kind == schema::Kind::Complex => {
                        merge_into(existing, canonical)
                    }
                    _ => {
                        holder.insert(name.to_owned(), canonical);
                    }
                }
            }
        }
        OpKind::Replace => {
            let canonical = schema::canonical_value(attr, value.unwrap_or(&Value::Null), name)?;
            match holder.get_mut(name) {
                Some(existing) if attr.kind == schema::Kind::Complex && !attr.multi => {
                    merge_into(existing, canonical)
                }
                _ => {
                    holder.insert(name.to_owned(), canonical);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(resource: Resource, start: Value, body: Value) -> Result<Value, ScimError> {
        let mut object = start.as_object().unwrap().clone();
        let ops = parse_request(resource, &body)?;
        apply(resource, &mut object, &ops)?;
        Ok(Value::Object(object))
    }

    fn ops(list: Value) -> Value {
        json!({"schemas": [PATCH_SCHEMA], "Operations": list})
    }

    #[test]
    fn okta_deactivation_without_path() {
        let out = patch(
            Resource::User,
            json!({"userName": "a", "active": true}),
            ops(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .unwrap();
        assert_eq!(out["active"], false);
    }

    #[test]
    fn entra_capitalised_ops_string_booleans_and_dotted_keys() {
        let out = patch(
            Resource::User,
            json!({"userName": "a", "active": true, "name": {"familyName": "S"}}),
            ops(json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "replace", "value": {"name.givenName": "Al", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops"}},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "x@example.com"}
            ])),
        );
        // The last op has no work email to change: noTarget.
        assert_eq!(out.unwrap_err().scim_type, Some("noTarget"));
        let out = patch(
            Resource::User,
            json!({"userName": "a", "active": true, "name": {"familyName": "S"}, "emails": [{"type": "work", "value": "o@example.com"}]}),
            ops(json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "replace", "value": {"name.givenName": "Al", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops"}},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "x@example.com"}
            ])),
        )
        .unwrap();
        assert_eq!(out["active"], false);
        assert_eq!(out["name"], json!({"familyName": "S", "givenName": "Al"}));
        assert_eq!(
            out["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
            "Ops"
        );
        assert_eq!(out["emails"][0]["value"], "x@example.com");
    }

    #[test]
    fn group_members_add_remove_replace() {
        let start = json!({"displayName": "g", "members": [{"value": "u1"}, {"value": "u2"}]});
        let out = patch(
            Resource::Group,
            start.clone(),
            ops(json!([{"op": "add", "path": "members", "value": [{"value": "u3"}, {"value": "u1"}]}])),
        )
        .unwrap();
        assert_eq!(out["members"].as_array().unwrap().len(), 3);
        let out = patch(
            Resource::Group,
            start.clone(),
            ops(json!([{"op": "remove", "path": "members[value eq \"u1\"]"}])),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "u2"}]));
        let out = patch(
            Resource::Group,
            start.clone(),
            ops(json!([{"op": "Remove", "path": "members", "value": [{"value": "u2"}]}])),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "u1"}]));
        let out = patch(
            Resource::Group,
            start.clone(),
            ops(json!([{"op": "replace", "path": "members", "value": [{"value": "u9"}]}])),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "u9"}]));
        let out = patch(
            Resource::Group,
            start,
            ops(json!([{"op": "remove", "path": "members"}])),
        )
        .unwrap();
        assert!(out.get("members").is_none());
    }

    #[test]
    fn refusals() {
        let user = json!({"userName": "a"});
        for (body, kind) in [
            (
                json!({"Operations": [{"op": "add", "path": "title", "value": "x"}]}),
                "invalidSyntax",
            ),
            (ops(json!([])), "invalidSyntax"),
            (
                ops(json!([{"op": "move", "path": "title", "value": "x"}])),
                "invalidSyntax",
            ),
            (
                ops(json!([{"op": "add", "path": "shoeSize", "value": "x"}])),
                "invalidPath",
            ),
            (ops(json!([{"op": "add", "path": "title["}])), "invalidPath"),
            (ops(json!([{"op": "remove"}])), "noTarget"),
            (
                ops(json!([{"op": "replace", "path": "id", "value": "x"}])),
                "mutability",
            ),
            (
                ops(json!([{"op": "replace", "path": "groups", "value": []}])),
                "mutability",
            ),
            (
                ops(json!([{"op": "replace", "path": "active", "value": "perhaps"}])),
                "invalidValue",
            ),
            (
                ops(json!([{"op": "replace", "value": "x"}])),
                "invalidValue",
            ),
        ] {
            let error = patch(Resource::User, user.clone(), body.clone()).unwrap_err();
            assert_eq!(error.scim_type, Some(kind), "{body}: {error}");
        }
    }
}
