//! HTML pages rendered with minijinja from the templates in `templates/` (embedded at build time,
//! optionally replaced by an operator's `[pages] templates_dir`), in the forum's look
//! (`[pages]` name, logo and accent colour) and the person's language ([`crate::i18n`]).
//!
//! Auto-escaping is on for every `.html` template; text from translations and configuration is
//! escaped like any other value, so neither can inject markup. Templates reach translations
//! through the `t(id, name=value, ...)` function, in the language of the `lang` context value.
//! [`Pages::from_config`] renders every overridable template in every language once, so a
//! template or message file that fails to render stops start-up and `check`, not a person's
//! error page.

use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use fluent_bundle::FluentValue;
use minijinja::value::{Kwargs, Serde, Value};
use minijinja::{Environment, State};
use serde::Serialize;

use crate::config::{PagesConfig, Rgb};
use crate::i18n::Localizer;

/// The page templates and translations, compiled once at start-up and shared read-only.
#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
    localizer: Arc<Localizer>,
}

/// The page layout every page extends, by name and source.
pub const BASE_TEMPLATE: (&str, &str) = ("base.html", include_str!("../../templates/base.html"));

/// The bridge's own pages: the layout, the error page and the logout confirmation. Each can be
/// replaced from `templates_dir`; the demo brings its own set.
pub const PRODUCTION_TEMPLATES: &[(&str, &str)] = &[
    BASE_TEMPLATE,
    ("error.html", include_str!("../../templates/error.html")),
    (
        "logged_out.html",
        include_str!("../../templates/logged_out.html"),
    ),
];

/// The templates a person of a real deployment can see; an operator may replace each.
pub const OVERRIDABLE: &[&str] = &["base.html", "error.html", "logged_out.html"];

/// The accent colour when `[pages] accent_color` is not set.
const DEFAULT_ACCENT: Rgb = Rgb(0x0a, 0x66, 0xc2);

/// The kinds of error page (the stem of their `-title` and `-message` messages).
pub const ERROR_KINDS: &[&str] = &[
    "bad-signature",
    "forum-mismatch",
    "bad-request",
    "login-unknown",
    "login-expired",
    "login-rejected",
    "bad-callback",
    "login-cancelled",
    "login-refused",
    "denied",
    "idp-unavailable",
    "not-ready",
    "internal",
    "not-found",
    "method-not-allowed",
    "rate-limited",
];

/// What every page knows about the site: the forum's name, logo and colours.
#[derive(Debug, Clone, Serialize)]
struct Site {
    /// `[pages] forum_name`, when set.
    forum_name: Option<String>,
    /// `[pages] logo_url` (https only).
    logo_url: Option<String>,
    /// The forum's home page: where "Back to the forum" goes.
    forum_url: String,
    /// Accent colour as `#rrggbb`, and the text colour readable on it.
    accent: String,
    accent_text: String,
}

impl Pages {
    /// The bridge's own pages in the bundled languages with the default look.
    pub fn new() -> Result<Self, Vec<String>> {
        Self::from_config(&PagesConfig::default(), "/")
    }

    /// Compiles the given `(name, source)` templates (the demo's), with the bundled languages
    /// and the default look; nothing is replaced and no sample is rendered.
    pub fn with_templates(
        templates: &[(&'static str, &'static str)],
    ) -> Result<Self, minijinja::Error> {
        let localizer = Localizer::bundled().map_err(|problems| {
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, text.join("; "))
        })?;
        let mut env = Environment::new();
        for (name, source) in templates {
            env.add_template(name, source)?;
        }
        Ok(Self::finish(
            env,
            Arc::new(localizer),
            &PagesConfig::default(),
            "/",
        ))
    }

    /// Compiles the bridge's templates (bundled, or the operator's from `templates_dir`) and
    /// message files of `config`, for a forum whose home page is `forum_url`, then renders
    /// every overridable template in every language once. Returns every problem found.
    pub fn from_config(config: &PagesConfig, forum_url: &str) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let localizer =
            match Localizer::load(config.locales_dir.as_deref(), &config.default_language) {
                Ok(localizer) => Arc::new(localizer),
                Err(errors) => {
                    problems.extend(errors.iter().map(|e| format!("pages.locales_dir: {e}")));
                    Arc::new(Localizer::bundled().map_err(|errors| {
                        errors.iter().map(ToString::to_string).collect::<Vec<_>>()
                    })?)
                }
            };
        let mut env = Environment::new();
        for (name, source) in PRODUCTION_TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                problems.push(format!("bundled template {name}: {e}"));
            }
        }
        if let Some(dir) = config.templates_dir.as_deref() {
            load_overrides(&mut env, dir, &mut problems);
        }
        let pages = Self::finish(env, localizer, config, forum_url);
        if problems.is_empty() {
            problems.extend(pages.render_samples());
        }
        if problems.is_empty() {
            Ok(pages)
        } else {
            Err(problems)
        }
    }

    /// Adds the site's look and the `t` function to `env`.
    fn finish(
        mut env: Environment<'static>,
        localizer: Arc<Localizer>,
        config: &PagesConfig,
        forum_url: &str,
    ) -> Self {
        let accent = config.accent_color.unwrap_or(DEFAULT_ACCENT);
        let site = Site {
            forum_name: config.forum_name.clone(),
            logo_url: config.logo_url.as_ref().map(ToString::to_string),
            forum_url: forum_url.to_owned(),
            accent: accent.css(),
            accent_text: accent.text_colour().to_owned(),
        };
        env.add_global("site", Value::from(Serde(site)));
        let messages = localizer.clone();
        env.add_function(
            "t",
            move |state: &State<'_, '_>,
                  id: &str,
                  kwargs: Kwargs|
                  -> Result<String, minijinja::Error> {
                let language = state
                    .lookup("lang")
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| messages.default_language().to_owned());
                let mut args: Vec<(&str, FluentValue<'_>)> = Vec::new();
                for name in kwargs.args() {
                    let value: Value = kwargs.get(name)?;
                    if value.is_undefined() || value.is_none() {
                        continue;
                    }
                    let value = match i64::try_from(value.clone()) {
                        Ok(number) if value.is_number() => FluentValue::from(number),
                        _ => FluentValue::from(value.to_string()),
                    };
                    args.push((name, value));
                }
                Ok(messages.message(&language, id, &args))
            },
        );
        Self { env, localizer }
    }

    /// The language for a request's `Accept-Language`.
    pub fn language(&self, headers: &HeaderMap) -> String {
        self.language_of(headers.get(header::ACCEPT_LANGUAGE))
    }

    /// The same from the `Accept-Language` value alone.
    pub fn language_of(&self, accept_language: Option<&HeaderValue>) -> String {
        let accept = accept_language.and_then(|v| v.to_str().ok());
        self.localizer.negotiate(accept).to_owned()
    }

    /// The language pages use when a request names none of the available ones.
    pub fn default_language(&self) -> &str {
        self.localizer.default_language()
    }

    /// Renders `name` in `lang` as an uncached HTML response with `status`; a template failure
    /// (which `from_config` makes unlikely) is logged and answered with a plain 500.
    pub fn respond<S: Serialize>(
        &self,
        name: &str,
        status: StatusCode,
        lang: &str,
        context: S,
    ) -> Response {
        match self.render(name, lang, context) {
            Ok(html) => (
                status,
                [
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                    (header::VARY, HeaderValue::from_static("accept-language")),
                ],
                Html(html),
            )
                .into_response(),
            Err(e) => {
                tracing::error!(template = name, error = %e, "page template failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "template error\n").into_response()
            }
        }
    }

    /// Renders `name` with `context` in the language `lang`.
    pub fn render<S: Serialize>(
        &self,
        name: &str,
        lang: &str,
        context: S,
    ) -> Result<String, minijinja::Error> {
        let context = minijinja::context! { lang => lang, ..Value::from(Serde(context)) };
        self.env.get_template(name)?.render(context)
    }

    /// Renders every overridable template with representative contexts in every language.
    fn render_samples(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let languages: Vec<String> = self.localizer.languages().map(str::to_owned).collect();
        for lang in &languages {
            for kind in ERROR_KINDS {
                for full in [false, true] {
                    let context = minijinja::context! {
                        kind => *kind,
                        status => 400,
                        request_id => "0123456789abcdef01234567",
                        reason => full.then_some("sample reason"),
                        contact => full.then_some("the forum's team"),
                        minutes => 10,
                        retry_after => full.then_some(3),
                        try_again_url => full.then_some("/session/sso"),
                        log_in_again_url => full.then_some("/session/sso"),
                        switch_account_url => full.then_some("/switch-account"),
                    };
                    if let Err(e) = self.render("error.html", lang, context) {
                        problems.push(format!("template error.html ({lang}, {kind}): {e:#}"));
                    }
                }
            }
            for message in ["logged-out-everywhere", "logged-out-forum"] {
                let context = minijinja::context! { message => message };
                if let Err(e) = self.render("logged_out.html", lang, context) {
                    problems.push(format!("template logged_out.html ({lang}): {e:#}"));
                }
            }
        }
        problems
    }
}

/// Replaces bundled templates by the `.html` files of `dir` with the same names.
fn load_overrides(env: &mut Environment<'static>, dir: &Path, problems: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(format!(
                "pages.templates_dir: cannot read {}: {e}",
                dir.display()
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".html") {
            continue;
        }
        if !OVERRIDABLE.contains(&name) {
            problems.push(format!(
                "pages.templates_dir: {} does not replace a bundled template (these can be \
                 replaced: {})",
                path.display(),
                OVERRIDABLE.join(", ")
            ));
            continue;
        }
        let name = name.to_owned();
        match std::fs::read_to_string(&path) {
            Ok(source) => {
                if let Err(e) = env.add_template_owned(name, source) {
                    problems.push(format!("pages.templates_dir: {}: {e:#}", path.display()));
                }
            }
            Err(e) => problems.push(format!(
                "pages.templates_dir: cannot read {}: {e}",
                path.display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_only_hex_triplets() {
        assert_eq!(Rgb::parse("#0a66c2"), Some(Rgb(0x0a, 0x66, 0xc2)));
        assert_eq!(Rgb::parse("#FFF"), Some(Rgb(255, 255, 255)));
        for bad in [
            "",
            "#",
            "0a66c2",
            "#0a66c",
            "#0a66c2ff",
            "red",
            "#12345g",
            "#fff;}",
            "#ff\u{e9}",
            "#fff</style>",
        ] {
            assert_eq!(Rgb::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Rgb(0x0a, 0x66, 0xc2).text_colour(), "#ffffff");
        assert_eq!(Rgb(0xff, 0xcc, 0x00).text_colour(), "#111111");
    }

    fn branded() -> Pages {
        let config = PagesConfig {
            forum_name: Some("Beispiel <Forum>".into()),
            logo_url: Some(url::Url::parse("https://cdn.example.com/logo.png").unwrap()),
            accent_color: Some(Rgb(0xff, 0xcc, 0x00)),
            ..PagesConfig::default()
        };
        Pages::from_config(&config, "https://forum.example.com/").unwrap()
    }

    #[test]
    fn pages_carry_the_forums_name_logo_and_colour_escaped() {
        let html = branded()
            .render(
                "error.html",
                "de",
                minijinja::context! { kind => "denied", status => 403, request_id => "r1",
                reason => "<script>x</script>", switch_account_url => "/switch-account" },
            )
            .unwrap();
        assert!(html.contains("<html lang=\"de\""), "{html}");
        assert!(
            html.contains("Zugriff verweigert · Beispiel &lt;Forum&gt;</title>"),
            "{html}"
        );
        assert!(
            html.contains("https:&#x2f;&#x2f;cdn.example.com&#x2f;logo.png"),
            "{html}"
        );
        assert!(
            html.contains("#ffcc00") && html.contains("#111111"),
            "{html}"
        );
        assert!(
            html.contains("&lt;script&gt;") && !html.contains("<script>"),
            "{html}"
        );
        assert!(html.contains("Anderes Konto verwenden"), "{html}");
        assert!(html.contains("Zurück zu Beispiel &lt;Forum&gt;"), "{html}");
    }

    #[test]
    fn a_broken_override_is_reported_at_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("error.html"),
            "{% extends \"base.html\" %}{% block x %}",
        )
        .unwrap();
        std::fs::write(dir.path().join("eror.html"), "typo").unwrap();
        let config = PagesConfig {
            templates_dir: Some(dir.path().to_owned()),
            ..PagesConfig::default()
        };
        let problems = Pages::from_config(&config, "/").unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("eror.html")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("error.html")),
            "{problems:?}"
        );

        // One that renders but fails at run time is caught by the sample renders.
        std::fs::remove_file(dir.path().join("eror.html")).unwrap();
        std::fs::write(dir.path().join("error.html"), "{{ 1 / 0 }}").unwrap();
        let problems = Pages::from_config(&config, "/").unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("error.html (de")),
            "{problems:?}"
        );

        std::fs::write(
            dir.path().join("error.html"),
            "<p>{{ t(kind ~ \"-title\") }}</p>",
        )
        .unwrap();
        let pages = Pages::from_config(&config, "/").unwrap();
        let html = pages
            .render(
                "error.html",
                "fr",
                minijinja::context! { kind => "login-expired" },
            )
            .unwrap();
        assert_eq!(html, "<p>Votre connexion a pris trop de temps</p>");
    }
}
