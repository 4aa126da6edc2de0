//! DiscourseConnect codec: verifies Discourse's signed login requests and builds the signed
//! answers Discourse accepts at `/session/sso_login` (DiscourseConnect, as implemented by
//! Discourse's `DiscourseConnectBase`). Pure: no I/O, no clock.

use std::collections::BTreeMap;

/// Every payload key Discourse reads from a provider's answer, in the order Discourse itself
/// emits them. `custom.<name>` fields are kept apart and always come last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    AddGroups,
    Admin,
    AvatarForceUpdate,
    AvatarUrl,
    Bio,
    CardBackgroundUrl,
    Email,
    ExternalId,
    Groups,
    Locale,
    LocaleForceUpdate,
    Location,
    Moderator,
    Name,
    Nonce,
    ProfileBackgroundUrl,
    RemoveGroups,
    RequireActivation,
    ReturnSsoUrl,
    SuppressWelcomeMessage,
    Title,
    Username,
    Website,
}

impl Field {
    /// All fields, in Discourse's own emission order.
    pub const ALL: [Field; 23] = [
        Field::AddGroups,
        Field::Admin,
        Field::AvatarForceUpdate,
        Field::AvatarUrl,
        Field::Bio,
        Field::CardBackgroundUrl,
        Field::Email,
        Field::ExternalId,
        Field::Groups,
        Field::Locale,
        Field::LocaleForceUpdate,
        Field::Location,
        Field::Moderator,
        Field::Name,
        Field::Nonce,
        Field::ProfileBackgroundUrl,
        Field::RemoveGroups,
        Field::RequireActivation,
        Field::ReturnSsoUrl,
        Field::SuppressWelcomeMessage,
        Field::Title,
        Field::Username,
        Field::Website,
    ];

    /// The key as it appears in the payload.
    pub const fn key(self) -> &'static str {
        match self {
            Field::AddGroups => "add_groups",
            Field::Admin => "admin",
            Field::AvatarForceUpdate => "avatar_force_update",
            Field::AvatarUrl => "avatar_url",
            Field::Bio => "bio",
            Field::CardBackgroundUrl => "card_background_url",
            Field::Email => "email",
            Field::ExternalId => "external_id",
            Field::Groups => "groups",
            Field::Locale => "locale",
            Field::LocaleForceUpdate => "locale_force_update",
            Field::Location => "location",
            Field::Moderator => "moderator",
            Field::Name => "name",
            Field::Nonce => "nonce",
            Field::ProfileBackgroundUrl => "profile_background_url",
            Field::RemoveGroups => "remove_groups",
            Field::RequireActivation => "require_activation",
            Field::ReturnSsoUrl => "return_sso_url",
            Field::SuppressWelcomeMessage => "suppress_welcome_message",
            Field::Title => "title",
            Field::Username => "username",
            Field::Website => "website",
        }
    }

    /// Looks a payload key up; `None` for keys Discourse ignores and for `custom.*`.
    pub fn from_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.key() == key)
    }

    /// Discourse reads these as booleans: only the exact strings `true` and `false` count.
    pub const fn is_bool(self) -> bool {
        matches!(
            self,
            Field::Admin
                | Field::AvatarForceUpdate
                | Field::LocaleForceUpdate
                | Field::Moderator
                | Field::RequireActivation
                | Field::SuppressWelcomeMessage
        )
    }

    /// Discourse reads these as one comma-separated list of group names.
    pub const fn is_group_list(self) -> bool {
        matches!(self, Field::Groups | Field::AddGroups | Field::RemoveGroups)
    }
}

/// A DiscourseConnect payload: at most one value per key, `custom.*` fields separate.
/// Used for both directions (Discourse's request and the provider's answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    fields: BTreeMap<Field, String>,
    custom: BTreeMap<String, String>,
}

impl Payload {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a text field, replacing any earlier value (a key is never repeated).
    pub fn set(&mut self, field: Field, value: impl Into<String>) -> &mut Self {
        self.fields.insert(field, value.into());
        self
    }

    /// Sets a boolean field as the literal `true` or `false` Discourse expects.
    pub fn set_bool(&mut self, field: Field, value: bool) -> &mut Self {
        self.set(field, if value { "true" } else { "false" })
    }

    /// Sets a group list as one comma-joined value.
    pub fn set_groups<S: AsRef<str>>(&mut self, field: Field, groups: &[S]) -> &mut Self {
        let joined = groups
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(",");
        self.set(field, joined)
    }

    /// Sets `custom.<name>`.
    pub fn set_custom(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.custom.insert(name.into(), value.into());
        self
    }

    /// Removes a field.
    pub fn remove(&mut self, field: Field) -> Option<String> {
        self.fields.remove(&field)
    }

    /// The value of a field, if set.
    pub fn get(&self, field: Field) -> Option<&str> {
        self.fields.get(&field).map(String::as_str)
    }

    /// A boolean field read the way Discourse reads it: `Some` only for `true`/`false`.
    pub fn get_bool(&self, field: Field) -> Option<bool> {
        match self.get(field) {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        }
    }

    /// The `custom.<name>` value, if set.
    pub fn custom(&self, name: &str) -> Option<&str> {
        self.custom.get(name).map(String::as_str)
    }

    /// Every set field, in Discourse's emission order.
    pub fn fields(&self) -> impl Iterator<Item = (Field, &str)> {
        self.fields.iter().map(|(f, v)| (*f, v.as_str()))
    }

    /// Every `custom.*` field, by name.
    pub fn custom_fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.custom.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every key/value pair as it goes on the wire (`custom.` prefix included), in order.
    pub fn pairs(&self) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, &str)> {
        self.fields()
            .map(|(f, v)| (std::borrow::Cow::Borrowed(f.key()), v))
            .chain(
                self.custom_fields()
                    .map(|(k, v)| (std::borrow::Cow::Owned(format!("custom.{k}")), v)),
            )
    }
}

/// Placeholder until the codec lands (merged from the codec branch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("signature mismatch")]
    SignatureMismatch,
}

impl ConnectError {
    /// True for a signature mismatch (403); everything else is malformed input (400).
    pub fn is_bad_signature(&self) -> bool {
        matches!(self, ConnectError::SignatureMismatch)
    }
}
