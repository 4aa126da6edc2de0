//! `[mapping]`: which claim (or template, or constant) fills each DiscourseConnect field, the
//! `email_verified` policy, and the checks that keep every value within what Discourse's
//! `DiscourseConnect#lookup_or_create_user` accepts without failing the login (blank or banned
//! `external_id`, invalid website URLs, over-long profile texts, unusable usernames).

use std::collections::BTreeMap;

use minijinja::Environment;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TraceEntry;
use super::claims::{self, ClaimPath};
use super::source::{Candidate, CompiledSource, Single, Source};
use super::username::{HARD_MAX_LENGTH, NameRules};
use crate::discourse::connect::{Field, Payload};
use crate::problem::ConfigProblem;

/// What to do with an email the IdP does not call verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailVerified {
    /// Refuse the login.
    #[default]
    Require,
    /// Log in with `require_activation=true`: Discourse mails an activation link first, and
    /// does not match the email to an existing account.
    Activate,
    /// Send the email as verified.
    Trust,
}

/// `[mapping]` as written by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    pub external_id: Source,
    pub email: Source,
    pub email_verified: EmailVerified,
    /// Claim path of the verification flag.
    pub email_verified_claim: String,
    /// What an absent verification claim means (Entra ID never sends one).
    pub email_verified_when_absent: bool,
    /// Template for an address when the IdP has none, e.g. `"{{ sub }}@users.forum.invalid"`.
    /// Such an address is the operator's own and is sent as verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synthetic_email: Option<String>,
    pub username: Source,
    pub username_min_length: usize,
    pub username_max_length: usize,
    pub unicode_usernames: bool,
    pub name: Source,
    pub avatar_url: Source,
    pub avatar_force_update: Source,
    pub bio: Source,
    pub website: Source,
    pub location: Source,
    pub title: Source,
    pub locale: Source,
    pub locale_force_update: Source,
    pub profile_background_url: Source,
    pub card_background_url: Source,
    pub suppress_welcome_message: Source,
    /// `custom.<name>` fields (Discourse user custom fields; `user_field_<id>` fills a user field).
    pub custom: BTreeMap<String, Source>,
}

impl Default for MappingConfig {
    fn default() -> Self {
        Self {
            external_id: Source::claim("sub"),
            email: Source::claim("email"),
            email_verified: EmailVerified::Require,
            email_verified_claim: "email_verified".to_owned(),
            email_verified_when_absent: false,
            synthetic_email: None,
            username: Source::FirstOf(vec![
                Single::Claim("preferred_username".to_owned()),
                Single::Claim("nickname".to_owned()),
                Single::Claim("email".to_owned()),
            ]),
            username_min_length: 3,
            username_max_length: 20,
            unicode_usernames: false,
            name: Source::FirstOf(vec![
                Single::Claim("name".to_owned()),
                Single::Template("{{ given_name }} {{ family_name }}".to_owned()),
            ]),
            avatar_url: Source::claim("picture"),
            avatar_force_update: Source::none(),
            bio: Source::none(),
            website: Source::none(),
            location: Source::none(),
            title: Source::none(),
            locale: Source::none(),
            locale_force_update: Source::none(),
            profile_background_url: Source::none(),
            card_background_url: Source::none(),
            suppress_welcome_message: Source::none(),
            custom: BTreeMap::new(),
        }
    }
}

impl MappingConfig {
    /// The username and group-name rules these settings describe.
    pub fn name_rules(&self) -> NameRules {
        NameRules {
            min_length: self.username_min_length,
            max_length: self.username_max_length,
            unicode: self.unicode_usernames,
        }
    }
}

/// How a profile field's value is checked before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Text, cut to at most this many characters.
    Text(usize),
    /// An absolute `http(s)` URL Discourse can fetch or link.
    Url,
    Locale,
    Bool,
}

/// Discourse stores these as `varchar(255)`-sized columns in practice.
const SHORT_TEXT: usize = 255;
/// `user_profile` limits for bio, location and website.
const PROFILE_TEXT: usize = 3000;

/// The values Discourse refuses as `external_id` (`BannedExternalId`), compared ignoring case.
const BANNED_EXTERNAL_IDS: [&str; 4] = ["none", "nil", "blank", "null"];

/// Claims that a user or an admin can change, so they make poor account keys.
const MUTABLE_CLAIMS: [&str; 12] = [
    "email",
    "preferred_username",
    "upn",
    "unique_name",
    "name",
    "nickname",
    "given_name",
    "family_name",
    "username",
    "login",
    "mail",
    "phone_number",
];

/// A value that passed its field's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    pub value: String,
    /// Dotted key of the alternative that produced it.
    pub rule: String,
}

/// The compiled `[mapping]` section.
#[derive(Debug, Clone)]
pub struct CompiledFields {
    pub(super) external_id: CompiledSource,
    pub(super) email: CompiledSource,
    pub(super) email_policy: EmailVerified,
    /// `None` only when the configured path is malformed, which fails compilation.
    pub(super) email_verified_claim: Option<ClaimPath>,
    pub(super) email_verified_when_absent: bool,
    pub(super) synthetic_email: Option<CompiledSource>,
    pub(super) username: CompiledSource,
    pub(super) names: NameRules,
    profile: Vec<(Field, Kind, String, CompiledSource)>,
    custom: Vec<(String, String, CompiledSource)>,
}

impl CompiledFields {
    /// The first claim the fields would read that `claims` lack (see
    /// [`CompiledSource::first_absent_claim`]), including the `email_verified` claim when an
    /// email is mapped.
    pub(super) fn first_absent_claim(&self, claims: &Map<String, Value>) -> Option<&ClaimPath> {
        let sources = [
            Some(&self.external_id),
            Some(&self.email),
            self.synthetic_email.as_ref(),
            Some(&self.username),
        ];
        let absent = sources
            .into_iter()
            .flatten()
            .chain(self.profile.iter().map(|(_, _, _, source)| source))
            .chain(self.custom.iter().map(|(_, _, source)| source))
            .find_map(|source| source.first_absent_claim(claims));
        absent.or_else(|| {
            self.email_verified_claim
                .as_ref()
                .filter(|path| !self.email.is_empty() && path.lookup(claims).is_none())
        })
    }

    /// Compiles `[mapping]`, adding its templates to `env`.
    pub fn compile(
        config: &MappingConfig,
        env: &mut Environment<'static>,
        problems: &mut Vec<ConfigProblem>,
        warnings: &mut Vec<String>,
    ) -> CompiledFields {
        let mut source = |key: &str, source: &Source, problems: &mut Vec<ConfigProblem>| {
            CompiledSource::compile(key, source, env, problems)
        };

        let external_id = source("mapping.external_id", &config.external_id, problems);
        if external_id.is_empty() {
            problems.push(ConfigProblem::new(
                "mapping.external_id",
                "needs a source; Discourse identifies accounts by it (the default is `sub`)",
            ));
        }
        if external_id.has_constant() {
            problems.push(ConfigProblem::new(
                "mapping.external_id",
                "must not be a constant: every user would log into the same account",
            ));
        }
        if let Some(path) = external_id
            .claim_paths()
            .find(|p| MUTABLE_CLAIMS.contains(&p.leaf()))
        {
            warnings.push(format!(
                "mapping.external_id: uses claim `{path}`, which can change (a renamed user or a \
                 changed address would get a new Discourse account, and a reused one would get \
                 someone else's); prefer `sub`"
            ));
        }

        let email = source("mapping.email", &config.email, problems);
        let synthetic_email = config.synthetic_email.as_ref().map(|template| {
            source(
                "mapping.synthetic_email",
                &Source::One(Single::Template(template.clone())),
                problems,
            )
        });
        if email.is_empty() && synthetic_email.is_none() {
            problems.push(ConfigProblem::new(
                "mapping.email",
                "needs a source: Discourse requires an email address (use \
                 mapping.synthetic_email for an IdP that has none)",
            ));
        }
        let email_verified_claim = match ClaimPath::parse(&config.email_verified_claim) {
            Ok(path) => Some(path),
            Err(message) => {
                problems.push(ConfigProblem::new("mapping.email_verified_claim", message));
                None
            }
        };
        if config.email_verified == EmailVerified::Trust {
            warnings.push(
                "mapping.email_verified: \"trust\" sends every email as verified; Discourse then \
                 links the login to any existing account with that address, so anyone who can \
                 set an unverified address at the IdP can take that account over"
                    .to_owned(),
            );
        }
        if config.email_verified_when_absent && config.email_verified != EmailVerified::Trust {
            warnings.push(format!(
                "mapping.email_verified_when_absent: a missing `{}` claim counts as verified; \
                 only do this for an IdP that verifies every address it sends",
                config.email_verified_claim
            ));
        }

        let names = config.name_rules();
        if config.username_min_length == 0 {
            problems.push(ConfigProblem::new(
                "mapping.username_min_length",
                "must be at least 1",
            ));
        }
        if config.username_max_length > HARD_MAX_LENGTH {
            problems.push(ConfigProblem::new(
                "mapping.username_max_length",
                format!("must be at most {HARD_MAX_LENGTH} (Discourse's limit)"),
            ));
        }
        if config.username_min_length > config.username_max_length {
            problems.push(ConfigProblem::new(
                "mapping.username_min_length",
                "must not be greater than mapping.username_max_length",
            ));
        }
        let username = source("mapping.username", &config.username, problems);

        let table: [(Field, Kind, &str, &Source); 12] = [
            (Field::Name, Kind::Text(SHORT_TEXT), "name", &config.name),
            (
                Field::AvatarUrl,
                Kind::Url,
                "avatar_url",
                &config.avatar_url,
            ),
            (
                Field::AvatarForceUpdate,
                Kind::Bool,
                "avatar_force_update",
                &config.avatar_force_update,
            ),
            (Field::Bio, Kind::Text(PROFILE_TEXT), "bio", &config.bio),
            (Field::Website, Kind::Url, "website", &config.website),
            (
                Field::Location,
                Kind::Text(PROFILE_TEXT),
                "location",
                &config.location,
            ),
            (Field::Title, Kind::Text(SHORT_TEXT), "title", &config.title),
            (Field::Locale, Kind::Locale, "locale", &config.locale),
            (
                Field::LocaleForceUpdate,
                Kind::Bool,
                "locale_force_update",
                &config.locale_force_update,
            ),
            (
                Field::ProfileBackgroundUrl,
                Kind::Url,
                "profile_background_url",
                &config.profile_background_url,
            ),
            (
                Field::CardBackgroundUrl,
                Kind::Url,
                "card_background_url",
                &config.card_background_url,
            ),
            (
                Field::SuppressWelcomeMessage,
                Kind::Bool,
                "suppress_welcome_message",
                &config.suppress_welcome_message,
            ),
        ];
        let mut profile = Vec::new();
        for (field, kind, name, src) in table {
            let key = format!("mapping.{name}");
            check_constants(&key, src, |v| validate(kind, v), problems);
            profile.push((field, kind, key.clone(), source(&key, src, problems)));
        }

        let mut custom = Vec::new();
        for (name, src) in &config.custom {
            let key = format!("mapping.custom.{name}");
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems.push(ConfigProblem::new(
                    &key,
                    "custom field names must be non-empty and without spaces",
                ));
            }
            custom.push((name.clone(), key.clone(), source(&key, src, problems)));
        }

        CompiledFields {
            external_id,
            email,
            email_policy: config.email_verified,
            email_verified_claim,
            email_verified_when_absent: config.email_verified_when_absent,
            synthetic_email,
            username,
            names,
            profile,
            custom,
        }
    }

    /// Evaluates the plain profile fields and custom fields into the payload.
    pub fn write_profile(
        &self,
        env: &Environment<'static>,
        claims: &Map<String, Value>,
        payload: &mut Payload,
        trace: &mut Vec<TraceEntry>,
    ) {
        for (field, kind, key, source) in &self.profile {
            if source.is_empty() {
                continue;
            }
            if let Some(picked) = pick(field.key(), key, source, env, claims, trace, |v| {
                validate(*kind, v)
            }) {
                payload.set(*field, picked.value);
            }
        }
        for (name, key, source) in &self.custom {
            let output = format!("custom.{name}");
            if let Some(picked) = pick(&output, key, source, env, claims, trace, |v| {
                Ok((v.to_owned(), None))
            }) {
                payload.set_custom(name.clone(), picked.value);
            }
        }
    }

    /// Whether the IdP calls the email verified, with a note for the trace.
    pub fn email_verified(&self, claims: &Map<String, Value>) -> (bool, String) {
        let Some(path) = &self.email_verified_claim else {
            return (false, "no valid mapping.email_verified_claim".to_owned());
        };
        match path.lookup(claims) {
            None => (
                self.email_verified_when_absent,
                format!(
                    "claim `{path}` is absent; mapping.email_verified_when_absent = {}",
                    self.email_verified_when_absent
                ),
            ),
            Some(value) => match claims::as_bool(&value) {
                Some(verified) => (verified, format!("claim `{path}` is {verified}")),
                None => (
                    false,
                    format!("claim `{path}` is {value}, not true or false; treated as unverified"),
                ),
            },
        }
    }
}

/// Checks constants at compile time with the same validator used at login.
fn check_constants(
    key: &str,
    source: &Source,
    validator: impl Fn(&str) -> Result<(String, Option<String>), String>,
    problems: &mut Vec<ConfigProblem>,
) {
    let list = matches!(source, Source::FirstOf(_));
    for (index, single) in source.alternatives().iter().enumerate() {
        if let Single::Value(value) = single
            && let Err(why) = validator(value)
        {
            let key = if list {
                format!("{key}[{index}]")
            } else {
                key.to_owned()
            };
            problems.push(ConfigProblem::new(key, format!("constant `{value}` {why}")));
        }
    }
}

/// Checks a value for a field of `kind`; `Ok` carries the value to send and an optional note.
fn validate(kind: Kind, value: &str) -> Result<(String, Option<String>), String> {
    match kind {
        Kind::Text(max) => {
            let trimmed = value.trim();
            if trimmed.chars().count() > max {
                let cut: String = trimmed.chars().take(max).collect();
                Ok((cut, Some(format!("cut to {max} characters"))))
            } else {
                Ok((trimmed.to_owned(), None))
            }
        }
        Kind::Url => {
            let trimmed = value.trim();
            if trimmed.len() > PROFILE_TEXT {
                return Err(format!("is longer than {PROFILE_TEXT} characters"));
            }
            match url::Url::parse(trimmed) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Ok((trimmed.to_owned(), None))
                }
                _ => Err("is not an absolute http(s) URL".to_owned()),
            }
        }
        Kind::Locale => {
            let normalized = value.trim().replace('-', "_");
            let valid = (2..=12).contains(&normalized.len())
                && normalized
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && normalized
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic());
            if valid {
                let note = (normalized != value).then(|| format!("written as `{normalized}`"));
                Ok((normalized, note))
            } else {
                Err("is not a locale such as `de` or `pt_BR`".to_owned())
            }
        }
        Kind::Bool => match claims::parse_bool_text(value) {
            Some(b) => Ok((b.to_string(), None)),
            None => Err("is not true or false".to_owned()),
        },
    }
}

/// Checks a candidate `external_id` the way Discourse does before using it.
pub fn validate_external_id(value: &str) -> Result<(String, Option<String>), String> {
    if value.trim().is_empty() {
        return Err("is blank".to_owned());
    }
    if BANNED_EXTERNAL_IDS
        .iter()
        .any(|banned| banned.eq_ignore_ascii_case(value.trim()))
    {
        return Err(format!(
            "is `{value}`, which Discourse refuses as an external_id"
        ));
    }
    Ok((value.to_owned(), None))
}

/// A plausible email address: one `@`, a local part, a dotted domain, no spaces.
pub fn validate_email(value: &str) -> Result<(String, Option<String>), String> {
    let trimmed = value.trim();
    let valid = trimmed.len() <= 254
        && !trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
        && trimmed.rsplit_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok((trimmed.to_owned(), None))
    } else {
        Err("is not an email address".to_owned())
    }
}

/// Tries a source's alternatives in order until one passes `validator`, and records the
/// decision (including skipped alternatives) in the trace under `output`.
pub fn pick(
    output: &str,
    key: &str,
    source: &CompiledSource,
    env: &Environment<'static>,
    claims: &Map<String, Value>,
    trace: &mut Vec<TraceEntry>,
    validator: impl Fn(&str) -> Result<(String, Option<String>), String>,
) -> Option<Picked> {
    let mut skipped = Vec::new();
    for Candidate {
        rule,
        origin,
        result,
    } in source.candidates(env, claims)
    {
        match result.and_then(|text| validator(&text).map_err(|why| format!("value {why}"))) {
            Ok((value, note)) => {
                let mut text = origin;
                if let Some(note) = note {
                    text.push_str(&format!(" ({note})"));
                }
                if !skipped.is_empty() {
                    text.push_str(&format!("; skipped: {}", skipped.join("; ")));
                }
                trace.push(TraceEntry::new(output, Some(value.clone()), &rule, text));
                return Some(Picked { value, rule });
            }
            Err(why) => skipped.push(format!("{origin} {why}")),
        }
    }
    let note = if skipped.is_empty() {
        "no source configured; not sent".to_owned()
    } else {
        format!("not sent: {}", skipped.join("; "))
    };
    trace.push(TraceEntry::new(output, None, key, note));
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_id_rules() {
        let cases = [
            ("248289761001", true),
            ("0", true),
            ("", false),
            ("  ", false),
            ("null", false),
            ("NULL", false),
            ("None", false),
            ("nil", false),
            ("blank", false),
            ("nullable", true),
        ];
        for (value, ok) in cases {
            assert_eq!(validate_external_id(value).is_ok(), ok, "{value:?}");
        }
    }

    #[test]
    fn email_rules() {
        let cases = [
            ("jane@example.com", true),
            ("jane+forum@mail.example.co.uk", true),
            (" jane@example.com ", true),
            ("jane", false),
            ("@example.com", false),
            ("jane@localhost", false),
            ("jane doe@example.com", false),
            ("jane@example.com.", false),
        ];
        for (value, ok) in cases {
            assert_eq!(validate_email(value).is_ok(), ok, "{value:?}");
        }
    }

    #[test]
    fn field_kinds() {
        let long = "x".repeat(300);
        let cases: &[(Kind, &str, Result<&str, ()>)] = &[
            (Kind::Text(255), "  Jane Doe ", Ok("Jane Doe")),
            (
                Kind::Url,
                "https://example.com/a.png",
                Ok("https://example.com/a.png"),
            ),
            (Kind::Url, "javascript:alert(1)", Err(())),
            (Kind::Url, "/relative.png", Err(())),
            (Kind::Url, "ftp://example.com/x", Err(())),
            (Kind::Locale, "de", Ok("de")),
            (Kind::Locale, "pt-BR", Ok("pt_BR")),
            (Kind::Locale, "12", Err(())),
            (Kind::Locale, "en US", Err(())),
            (Kind::Bool, "true", Ok("true")),
            (Kind::Bool, "FALSE", Ok("false")),
            (Kind::Bool, "1", Err(())),
        ];
        for (kind, input, expected) in cases {
            let got = validate(*kind, input).map(|(v, _)| v).map_err(|_| ());
            assert_eq!(
                got.as_deref(),
                expected.as_deref().map_err(|_| &()),
                "{kind:?} {input:?}"
            );
        }
        let (cut, note) = validate(Kind::Text(255), &long).unwrap();
        assert_eq!(cut.chars().count(), 255);
        assert!(note.is_some());
    }
}
