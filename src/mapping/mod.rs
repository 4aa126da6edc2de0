//! Claim mapping: turns verified OpenID Connect claims (the merged ID-token + userinfo claims,
//! OpenID Connect Core §5) into a DiscourseConnect payload through the operator's `[mapping]`,
//! `[groups]` and `[access]` rules, or into a refusal that names the rule. Pure: no I/O, no
//! clock. `docs/mapping.md` describes the pipeline for operators.
//!
//! The stages, in order: `external_id`, email and its verification policy, username, profile
//! and custom fields, groups and roles, access rules. Every stage records which config key
//! produced each output in a [`TraceEntry`], which is what `explain` prints.

pub mod access;
pub mod claims;
pub mod explain;
pub mod fields;
pub mod groups;
pub mod shapes;
pub mod source;
pub mod username;

use minijinja::Environment;
use serde::Serialize;
use serde_json::{Map, Value};

pub use access::AccessConfig;
pub use fields::{EmailVerified, MappingConfig};
pub use groups::{
    CaseMode, GraphGroups, GraphSettings, GroupMode, GroupRule, GroupsConfig, OneOrMany, Overage,
    PathMode, UnknownGroups, Unmatched,
};
pub use shapes::SourceShape;
pub use source::{Single, Source};

use crate::discourse::connect::{Field, Payload};
use crate::problem::ConfigProblem;
use access::{CompiledAccess, Subject};
use fields::{CompiledFields, pick, validate_email, validate_external_id};
use groups::{CompiledGroups, GroupsOutcome};

/// One decision of the mapping: which output it concerns, what was produced, and the config
/// key responsible. `explain` prints these; they never contain secrets, only claim values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    /// Payload key (`email`, `custom.department`, `add_groups`), `idp_group` (what became of
    /// one IdP group), `groups` (the state of the group claims) or `access` (one access rule).
    pub output: String,
    /// The value produced, or `None` when nothing was sent.
    pub value: Option<String>,
    /// The dotted config key that decided, e.g. `mapping.name[1]` or `groups.rules[0]`.
    pub rule: String,
    /// How the value came about, in words.
    pub note: String,
}

impl TraceEntry {
    pub(crate) fn new(
        output: impl Into<String>,
        value: Option<String>,
        rule: impl Into<String>,
        note: impl Into<String>,
    ) -> Self {
        Self {
            output: output.into(),
            value,
            rule: rule.into(),
            note: note.into(),
        }
    }
}

/// A login the rules allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// Everything to send except `nonce` (and `return_sso_url`), which the login flow adds.
    pub payload: Payload,
    /// Which rule produced each output.
    pub trace: Vec<TraceEntry>,
    /// Group names that were not sent, with the reason (invalid name, no matching rule...).
    pub dropped_groups: Vec<(String, String)>,
}

/// A login the rules refuse. Nothing is sent to Discourse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The config key that refused, e.g. `access.allowed_groups` or `mapping.email_verified`.
    pub rule: String,
    /// Why, in words safe to show the user (no claim values).
    pub message: String,
    /// Whom to ask, from `access.contact`.
    pub contact: Option<String>,
    /// The full trace, for `explain` and logs; not for the user.
    pub trace: Vec<TraceEntry>,
    /// Group names that were not usable, with the reason.
    pub dropped_groups: Vec<(String, String)>,
}

/// The result of mapping one login's claims: the payload to send, or why not.
pub type Outcome = Result<Mapped, Denial>;

/// The compiled mapping rules: build once per config (re)load, then call [`Mapper::map`] per
/// login. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Mapper {
    env: Environment<'static>,
    fields: CompiledFields,
    groups: CompiledGroups,
    access: CompiledAccess,
    warnings: Vec<String>,
}

impl Mapper {
    /// Compiles the three sections, reporting every problem at once.
    pub fn compile(
        mapping: &MappingConfig,
        groups: &GroupsConfig,
        access: &AccessConfig,
    ) -> Result<Mapper, Vec<ConfigProblem>> {
        let mut env = source::new_environment();
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let fields = CompiledFields::compile(mapping, &mut env, &mut problems, &mut warnings);
        let groups =
            CompiledGroups::compile(groups, mapping.name_rules(), &mut problems, &mut warnings);
        let access = CompiledAccess::compile(access, &groups, &mut problems, &mut warnings);
        if problems.is_empty() {
            Ok(Mapper {
                env,
                fields,
                groups,
                access,
                warnings,
            })
        } else {
            Err(problems)
        }
    }

    /// Things that are allowed but probably wrong (e.g. `external_id` from a mutable claim),
    /// each as `key: explanation`.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The first claim the rules read that `claims` lack, if any: with `oidc.userinfo = "auto"`
    /// the bridge fetches userinfo only then. The groups claim counts when groups reach
    /// Discourse or an access rule needs them.
    pub fn first_absent_claim(&self, claims: &Map<String, Value>) -> Option<&str> {
        let groups = if self.groups.is_active() || self.access.reads_groups() {
            self.groups.claim_paths()
        } else {
            &[]
        };
        let absent = self
            .fields
            .first_absent_claim(claims)
            .or_else(|| groups.iter().find(|path| path.lookup(claims).is_none()))
            .map(claims::ClaimPath::as_str);
        absent.or_else(|| {
            (self.access.reads_hosted_domain() && !claims.contains_key("hd")).then_some("hd")
        })
    }

    /// The first claim path `[groups] sources` names (`groups` by default): where SCIM
    /// provisioning puts a user's group names so that they map as at login.
    pub fn group_claim(&self) -> &str {
        self.groups
            .claim_paths()
            .first()
            .map_or("groups", claims::ClaimPath::as_str)
    }

    /// Where to ask Microsoft Graph for this login's groups, when `groups.overage = "graph"`,
    /// the claims carry the Entra overage marker and the groups matter. The login flow then
    /// passes Graph's answer to [`Mapper::map_with`].
    pub fn graph_lookup(&self, claims: &Map<String, Value>) -> Option<&GraphSettings> {
        if self.groups.is_active() || self.access.reads_groups() {
            self.groups.graph_lookup(claims)
        } else {
            None
        }
    }

    /// Maps one login's merged claims (an overage is not resolved; see [`Mapper::map_with`]).
    pub fn map(&self, claims: &Map<String, Value>) -> Outcome {
        self.map_with(claims, None)
    }

    /// Maps one login's merged claims, with Microsoft Graph's answer for an overage login.
    pub fn map_with(&self, claims: &Map<String, Value>, graph: Option<&GraphGroups>) -> Outcome {
        let mut trace = Vec::new();
        let mut dropped = Vec::new();
        let mut payload = Payload::new();
        let mut refusals: Vec<(String, String)> = Vec::new();
        let f = &self.fields;

        match pick(
            "external_id",
            "mapping.external_id",
            &f.external_id,
            &self.env,
            claims,
            &mut trace,
            validate_external_id,
        ) {
            Some(picked) => {
                payload.set(Field::ExternalId, picked.value);
            }
            None => refusals.push((
                "mapping.external_id".to_owned(),
                "The identity provider did not send a usable account identifier, so you cannot \
                 be logged in."
                    .to_owned(),
            )),
        }

        let email = self.map_email(claims, &mut payload, &mut trace, &mut refusals);

        let username_rules = f.names;
        if let Some(picked) = pick(
            "username",
            "mapping.username",
            &f.username,
            &self.env,
            claims,
            &mut trace,
            |raw| match username_rules.clean_username(raw) {
                Some(clean) if clean == raw => Ok((clean, None)),
                Some(clean) => Ok((clean, Some(format!("cleaned from `{raw}`")))),
                None => Err("has nothing Discourse accepts in a username".to_owned()),
            },
        ) {
            payload.set(Field::Username, picked.value);
        } else if !f.username.is_empty() {
            trace.push(TraceEntry::new(
                "username",
                None,
                "mapping.username",
                "Discourse will suggest a username from the name or email",
            ));
        }

        f.write_profile(&self.env, claims, &mut payload, &mut trace);

        let groups = self
            .groups
            .evaluate(claims, graph, &mut trace, &mut dropped);
        if let GroupsOutcome::Refused { rule, message, .. } = &groups {
            refusals.push((rule.clone(), message.clone()));
        }
        self.groups.apply(&groups, &mut payload, &mut trace);

        let access_email = email
            .as_ref()
            .and_then(|e| (!e.synthetic).then_some((e.address.as_str(), e.verified_for_access)));
        if let Some(refusal) = self.access.check(
            &Subject {
                claims,
                email: access_email,
                groups: &groups,
            },
            &mut trace,
        ) {
            refusals.push((refusal.rule, refusal.message));
        }

        match refusals.into_iter().next() {
            None => Ok(Mapped {
                payload,
                trace,
                dropped_groups: dropped,
            }),
            Some((rule, message)) => Err(Denial {
                rule,
                message,
                contact: self.access.contact().map(str::to_owned),
                trace,
                dropped_groups: dropped,
            }),
        }
    }

    /// The email and the `email_verified` policy; records refusals for a missing or
    /// unverified address.
    fn map_email(
        &self,
        claims: &Map<String, Value>,
        payload: &mut Payload,
        trace: &mut Vec<TraceEntry>,
        refusals: &mut Vec<(String, String)>,
    ) -> Option<MappedEmail> {
        let f = &self.fields;
        if let Some(picked) = pick(
            "email",
            "mapping.email",
            &f.email,
            &self.env,
            claims,
            trace,
            validate_email,
        ) {
            let (verified, note) = f.email_verified(claims);
            let verified_for_access = match f.email_policy {
                EmailVerified::Trust => {
                    trace.push(TraceEntry::new(
                        "require_activation",
                        None,
                        "mapping.email_verified",
                        format!("{note}; policy \"trust\" sends the email as verified"),
                    ));
                    true
                }
                _ if verified => {
                    trace.push(TraceEntry::new(
                        "require_activation",
                        None,
                        "mapping.email_verified_claim",
                        format!("{note}; the email is sent as verified"),
                    ));
                    true
                }
                EmailVerified::Activate => {
                    payload.set_bool(Field::RequireActivation, true);
                    trace.push(TraceEntry::new(
                        "require_activation",
                        Some("true".to_owned()),
                        "mapping.email_verified",
                        format!(
                            "{note}; policy \"activate\": Discourse mails an activation link and \
                             does not link the login to an existing account by email"
                        ),
                    ));
                    false
                }
                EmailVerified::Require => {
                    trace.push(TraceEntry::new(
                        "require_activation",
                        None,
                        "mapping.email_verified",
                        format!("{note}; policy \"require\" refuses the login"),
                    ));
                    let flag_absent = f
                        .email_verified_claim
                        .as_ref()
                        .is_some_and(|path| path.lookup(claims).is_none());
                    let message = if flag_absent {
                        // Nothing the user does at the IdP can add the flag: this is the
                        // configuration's to fix, so the page says so and what to change.
                        "The identity provider does not say whether your email address is \
                         verified, so the forum cannot accept it. This is not something you can \
                         fix: please pass this message on to the forum's administrators. (For \
                         them: in the bridge's [mapping] section, email_verified_claim must name \
                         the claim that carries the address's verification, e.g. xms_edov for \
                         Entra ID, and accounts without a mailbox need synthetic_email rather \
                         than an address taken from another claim such as preferred_username.)"
                    } else {
                        "Your email address is not verified at the identity provider. Verify it \
                         there, then log in again."
                    };
                    refusals.push(("mapping.email_verified".to_owned(), message.to_owned()));
                    false
                }
            };
            payload.set(Field::Email, picked.value.clone());
            return Some(MappedEmail {
                address: picked.value,
                verified_for_access,
                synthetic: false,
            });
        }
        if let Some(synthetic) = &f.synthetic_email
            && let Some(picked) = pick(
                "email",
                "mapping.synthetic_email",
                synthetic,
                &self.env,
                claims,
                trace,
                validate_email,
            )
        {
            payload.set(Field::Email, picked.value.clone());
            return Some(MappedEmail {
                address: picked.value,
                verified_for_access: false,
                synthetic: true,
            });
        }
        refusals.push((
            "mapping.email".to_owned(),
            "The identity provider did not share an email address for your account, and the \
             forum needs one."
                .to_owned(),
        ));
        None
    }
}

/// The email that will be sent, and what the access rules may conclude from it.
#[derive(Debug)]
struct MappedEmail {
    address: String,
    /// Verified by the IdP (or trusted by policy), so its domain says something.
    verified_for_access: bool,
    /// Built by `mapping.synthetic_email`, so its domain is the operator's, not the user's.
    synthetic: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn default_mapper() -> Mapper {
        Mapper::compile(
            &MappingConfig::default(),
            &GroupsConfig::default(),
            &AccessConfig::default(),
        )
        .unwrap()
    }

    fn allowed(outcome: Outcome) -> Mapped {
        match outcome {
            Ok(mapped) => mapped,
            Err(denial) => panic!("unexpected denial: {denial:#?}"),
        }
    }

    fn denied(outcome: Outcome) -> Denial {
        match outcome {
            Err(denial) => denial,
            Ok(mapped) => panic!("unexpected success: {:#?}", mapped.payload),
        }
    }

    /// The lead shares one `Mapper` between request handlers and swaps it on reload.
    #[test]
    fn mapper_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Mapper>();
        assert_send_sync::<Outcome>();
    }

    #[test]
    fn defaults_map_standard_claims() {
        let mapped = allowed(default_mapper().map(&claims(json!({
            "sub": "248289761001",
            "email": "jane@example.com",
            "email_verified": true,
            "preferred_username": "Jane Doe",
            "given_name": "Jane",
            "family_name": "Doe",
            "picture": "https://example.com/jane.png"
        }))));
        let pairs: Vec<(String, String)> = mapped
            .payload
            .pairs()
            .map(|(k, v)| (k.into_owned(), v.to_owned()))
            .collect();
        let expected = [
            ("avatar_url", "https://example.com/jane.png"),
            ("email", "jane@example.com"),
            ("external_id", "248289761001"),
            ("name", "Jane Doe"),
            ("username", "Jane_Doe"),
        ];
        assert_eq!(
            pairs,
            expected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        );
        let name = mapped.trace.iter().find(|t| t.output == "name").unwrap();
        assert_eq!(name.rule, "mapping.name[1]");
    }

    #[test]
    fn missing_or_banned_external_id_is_denied() {
        let mapper = default_mapper();
        for sub in [
            json!(null),
            json!(""),
            json!("NULL"),
            json!("nil"),
            json!(["a", "b"]),
        ] {
            let denial = denied(mapper.map(&claims(json!({
                "sub": sub,
                "email": "jane@example.com",
                "email_verified": true
            }))));
            assert_eq!(denial.rule, "mapping.external_id", "{sub}");
        }
    }

    #[test]
    fn email_verified_policies() {
        // Expected: Ok(require_activation value) when allowed, Err(rule) when denied.
        type Expected = Result<Option<&'static str>, &'static str>;
        let cases: &[(EmailVerified, Value, Expected)] = &[
            (EmailVerified::Require, json!(true), Ok(None)),
            (EmailVerified::Require, json!("true"), Ok(None)),
            (
                EmailVerified::Require,
                json!(false),
                Err("mapping.email_verified"),
            ),
            (
                EmailVerified::Require,
                json!("false"),
                Err("mapping.email_verified"),
            ),
            (
                EmailVerified::Require,
                json!(null),
                Err("mapping.email_verified"),
            ),
            (
                EmailVerified::Require,
                json!("yes"),
                Err("mapping.email_verified"),
            ),
            (EmailVerified::Activate, json!(true), Ok(None)),
            (EmailVerified::Activate, json!(false), Ok(Some("true"))),
            (EmailVerified::Activate, json!("FALSE"), Ok(Some("true"))),
            (EmailVerified::Trust, json!(false), Ok(None)),
        ];
        for (policy, verified, expected) in cases {
            let mapper = Mapper::compile(
                &MappingConfig {
                    email_verified: *policy,
                    ..MappingConfig::default()
                },
                &GroupsConfig::default(),
                &AccessConfig::default(),
            )
            .unwrap();
            let outcome = mapper.map(&claims(json!({
                "sub": "1",
                "email": "jane@example.com",
                "email_verified": verified
            })));
            let got = match &outcome {
                Ok(m) => Ok(m.payload.get(Field::RequireActivation)),
                Err(d) => Err(d.rule.as_str()),
            };
            assert_eq!(got, *expected, "{policy:?} {verified}");
        }
    }

    #[test]
    fn absent_claims_are_those_that_could_change_the_outcome() {
        let mapper = default_mapper();
        let full = claims(json!({
            "sub": "u-1", "email": "a@example.com", "email_verified": true,
            "preferred_username": "alice", "name": "Alice", "picture": "https://x.test/a.png",
        }));
        assert_eq!(mapper.first_absent_claim(&full), None);
        // A source's first alternative settles it; a missing one could still come from userinfo.
        let mut thin = full.clone();
        thin.remove("preferred_username");
        assert_eq!(mapper.first_absent_claim(&thin), Some("preferred_username"));
        let mut unverified = full.clone();
        unverified.remove("email_verified");
        assert_eq!(
            mapper.first_absent_claim(&unverified),
            Some("email_verified")
        );
        // The default groups section is inactive: no groups claim is needed.
        assert!(!full.contains_key("groups"));

        let with_rules = Mapper::compile(
            &MappingConfig {
                name: Source::FirstOf(vec![
                    Single::Template("{{ given_name }} {{ family_name }}".into()),
                    Single::Claim("name".into()),
                ]),
                ..MappingConfig::default()
            },
            &GroupsConfig::default(),
            &AccessConfig {
                hosted_domains: vec!["example.com".into()],
                allowed_groups: vec!["staff".into()],
                ..AccessConfig::default()
            },
        )
        .unwrap();
        assert!(matches!(
            with_rules.first_absent_claim(&full),
            Some("given_name" | "family_name")
        ));
        let mut named = full.clone();
        named.insert("given_name".into(), json!("Alice"));
        named.insert("family_name".into(), json!("Liddell"));
        assert_eq!(with_rules.first_absent_claim(&named), Some("groups"));
        named.insert("groups".into(), json!(["staff"]));
        assert_eq!(with_rules.first_absent_claim(&named), Some("hd"));
        named.insert("hd".into(), json!("example.com"));
        assert_eq!(with_rules.first_absent_claim(&named), None);
    }

    #[test]
    fn absent_verification_claim_follows_config() {
        let mapper = Mapper::compile(
            &MappingConfig {
                email_verified_when_absent: true,
                ..MappingConfig::default()
            },
            &GroupsConfig::default(),
            &AccessConfig::default(),
        )
        .unwrap();
        assert!(mapper.warnings()[0].starts_with("mapping.email_verified_when_absent"));
        let outcome = mapper.map(&claims(json!({"sub": "1", "email": "a@example.com"})));
        assert!(outcome.is_ok());
    }

    #[test]
    fn missing_email_is_denied_unless_synthetic() {
        let claims = claims(json!({"sub": "u-17", "preferred_username": "bob"}));
        assert_eq!(denied(default_mapper().map(&claims)).rule, "mapping.email");
        let mapper = Mapper::compile(
            &MappingConfig {
                synthetic_email: Some("{{ sub }}@users.forum.invalid".to_owned()),
                ..MappingConfig::default()
            },
            &GroupsConfig::default(),
            &AccessConfig::default(),
        )
        .unwrap();
        let mapped = allowed(mapper.map(&claims));
        assert_eq!(
            mapped.payload.get(Field::Email),
            Some("u-17@users.forum.invalid")
        );
        assert_eq!(mapped.payload.get(Field::RequireActivation), None);
    }

    #[test]
    fn username_falls_back_and_is_cleaned() {
        let mapper = default_mapper();
        let base = json!({"sub": "1", "email": "x.y@example.com", "email_verified": true});
        let cases = [
            (
                json!({"preferred_username": "Ünïcödé Üser"}),
                Some("Unicode_User"),
            ),
            (
                json!({"preferred_username": "Иван", "nickname": "ivan"}),
                Some("ivan"),
            ),
            (json!({"preferred_username": "a"}), Some("a11")),
            (json!({}), Some("x.y")),
        ];
        for (extra, expected) in cases {
            let mut input = claims(base.clone());
            input.extend(claims(extra.clone()));
            let mapped = allowed(mapper.map(&input));
            assert_eq!(mapped.payload.get(Field::Username), expected, "{extra}");
        }
        let mut unusable =
            claims(json!({"sub": "1", "email": "日本@example.com", "email_verified": true}));
        unusable.insert("preferred_username".to_owned(), json!("日本"));
        let mapped = allowed(mapper.map(&unusable));
        assert_eq!(mapped.payload.get(Field::Username), None);
    }

    #[test]
    fn profile_fields_only_when_claims_exist() {
        let config = MappingConfig {
            website: Source::claim("website"),
            bio: Source::claim("profile.bio"),
            locale: Source::claim("locale"),
            suppress_welcome_message: Source::One(Single::Value("true".to_owned())),
            locale_force_update: Source::claim("force_locale"),
            custom: [
                ("department".to_owned(), Source::claim("department")),
                ("user_field_1".to_owned(), Source::claim("employee_id")),
            ]
            .into(),
            ..MappingConfig::default()
        };
        let mapper =
            Mapper::compile(&config, &GroupsConfig::default(), &AccessConfig::default()).unwrap();
        let mapped = allowed(mapper.map(&claims(json!({
            "sub": "1",
            "email": "a@example.com",
            "email_verified": true,
            "website": "not a url",
            "locale": "pt-BR",
            "force_locale": "yes",
            "department": "Sales",
        }))));
        let p = &mapped.payload;
        assert_eq!(p.get(Field::Website), None);
        assert_eq!(p.get(Field::Bio), None);
        assert_eq!(p.get(Field::Locale), Some("pt_BR"));
        assert_eq!(p.get(Field::LocaleForceUpdate), None);
        assert_eq!(p.get(Field::SuppressWelcomeMessage), Some("true"));
        assert_eq!(p.custom("department"), Some("Sales"));
        assert_eq!(p.custom("user_field_1"), None);
        // The avatar default claim `picture` is absent, so no avatar_url either.
        assert_eq!(p.get(Field::AvatarUrl), None);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let mapping = MappingConfig {
            external_id: Source::One(Single::Value("x".to_owned())),
            name: Source::One(Single::Template("{{ given_name ".to_owned())),
            suppress_welcome_message: Source::One(Single::Value("maybe".to_owned())),
            username_max_length: 80,
            ..MappingConfig::default()
        };
        let groups = GroupsConfig {
            rules: vec![GroupRule {
                pattern: Some("(".to_owned()),
                to: Some(OneOrMany::One("x_y".to_owned())),
                ..GroupRule::default()
            }],
            ..GroupsConfig::default()
        };
        let access = AccessConfig {
            hosted_domains: vec!["not a domain".to_owned()],
            ..AccessConfig::default()
        };
        let problems = Mapper::compile(&mapping, &groups, &access).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "mapping.external_id",
                "mapping.username_max_length",
                "mapping.name",
                "mapping.suppress_welcome_message",
                "groups.rules[0].pattern",
                "access.hosted_domains[0]"
            ],
            "{problems:#?}"
        );
        assert!(problems[2].message.starts_with("template error"));
    }

    #[test]
    fn warns_about_risky_settings() {
        let mapper = Mapper::compile(
            &MappingConfig {
                external_id: Source::claim("email"),
                email_verified: EmailVerified::Trust,
                ..MappingConfig::default()
            },
            &GroupsConfig {
                unmatched: Unmatched::Keep,
                mode: GroupMode::Full,
                ..GroupsConfig::default()
            },
            &AccessConfig::default(),
        )
        .unwrap();
        let keys: Vec<&str> = mapper
            .warnings()
            .iter()
            .map(|w| w.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            [
                "mapping.external_id",
                "mapping.email_verified",
                "groups.mode"
            ]
        );
        let mapper = Mapper::compile(
            &MappingConfig::default(),
            &GroupsConfig {
                unmatched: Unmatched::Keep,
                ..GroupsConfig::default()
            },
            &AccessConfig::default(),
        )
        .unwrap();
        assert!(mapper.warnings()[0].starts_with("groups.managed"));
    }

    #[test]
    fn denial_names_rule_and_contact() {
        let mapper = Mapper::compile(
            &MappingConfig::default(),
            &GroupsConfig {
                unmatched: Unmatched::Keep,
                ..GroupsConfig::default()
            },
            &AccessConfig {
                allowed_groups: vec!["forum".to_owned()],
                contact: Some("it-help@example.com".to_owned()),
                ..AccessConfig::default()
            },
        )
        .unwrap();
        let denial = denied(mapper.map(&claims(json!({
            "sub": "1",
            "email": "a@example.com",
            "email_verified": true,
            "groups": ["other"]
        }))));
        assert_eq!(denial.rule, "access.allowed_groups");
        assert_eq!(denial.contact.as_deref(), Some("it-help@example.com"));
        assert!(!denial.message.contains("other"));
    }

    /// The `[mapping]`, `[groups]` and `[access]` part of the example config parses and
    /// compiles without problems.
    #[test]
    fn example_config_sections_compile() {
        use figment::Figment;
        use figment::providers::{Format, Toml};

        #[derive(serde::Deserialize)]
        struct Sections {
            #[serde(default)]
            mapping: MappingConfig,
            #[serde(default)]
            groups: GroupsConfig,
            #[serde(default)]
            access: AccessConfig,
        }
        let text = include_str!("../../config/bridge.example.toml");
        let marker = text
            .find("# Claim mapping")
            .expect("the example config has the claim mapping marker");
        let section = &text[marker..];
        for header in ["[mapping]", "[groups]", "[access]"] {
            assert!(section.contains(header), "{header} is documented");
        }
        let sections: Sections = Figment::from(Toml::string(section)).extract().unwrap();
        if let Err(problems) =
            Mapper::compile(&sections.mapping, &sections.groups, &sections.access)
        {
            panic!("{problems:#?}");
        }

        // Each commented IdP example, without its `#> ` prefix, parses and compiles too.
        let mut examples = Vec::new();
        for block in section.split("# === Example: ").skip(1) {
            let (title, body) = block.split_once('\n').unwrap_or((block, ""));
            let body = body.split("# === End ===").next().unwrap_or("");
            let toml: String = body
                .lines()
                .filter_map(|line| line.strip_prefix("#>"))
                .map(|line| format!("{}\n", line.strip_prefix(' ').unwrap_or(line)))
                .collect();
            let sections: Sections = Figment::from(Toml::string(&toml))
                .extract()
                .unwrap_or_else(|e| panic!("example {title}: {e}"));
            if let Err(problems) =
                Mapper::compile(&sections.mapping, &sections.groups, &sections.access)
            {
                panic!("example {title}: {problems:#?}");
            }
            examples.push(title.trim_end_matches(" ===").to_owned());
        }
        assert_eq!(examples, ["Keycloak", "Google Workspace", "Entra ID"]);
    }
}
