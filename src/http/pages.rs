//! HTML pages rendered with minijinja from the templates in `templates/`, embedded at build time
//! so the binary is self-contained. Auto-escaping is on for every `.html` template. The bridge's
//! own pages are [`PRODUCTION_TEMPLATES`]; the demo brings its own set.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

/// The page templates, compiled once at start-up and shared read-only.
#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
}

/// The page layout every page extends, by name and source.
pub const BASE_TEMPLATE: (&str, &str) = ("base.html", include_str!("../../templates/base.html"));

/// The bridge's own pages: the layout, the error page and the logout confirmation.
pub const PRODUCTION_TEMPLATES: &[(&str, &str)] = &[
    BASE_TEMPLATE,
    ("error.html", include_str!("../../templates/error.html")),
    (
        "logged_out.html",
        include_str!("../../templates/logged_out.html"),
    ),
];

impl Pages {
    /// Compiles the bridge's own pages.
    pub fn new() -> Result<Self, minijinja::Error> {
        Self::with_templates(PRODUCTION_TEMPLATES)
    }

    /// Compiles the given `(name, source)` templates.
    pub fn with_templates(
        templates: &[(&'static str, &'static str)],
    ) -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        for (name, source) in templates {
            env.add_template(name, source)?;
        }
        Ok(Self { env })
    }

    /// Renders `name` as an uncached HTML response with `status`; a template failure (a bug)
    /// is logged and answered with a plain 500.
    pub fn respond<S: Serialize>(&self, name: &str, status: StatusCode, context: S) -> Response {
        match self.render(name, context) {
            Ok(html) => (
                status,
                [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
                Html(html),
            )
                .into_response(),
            Err(e) => {
                tracing::error!(template = name, error = %e, "page template failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "template error\n").into_response()
            }
        }
    }

    /// Renders `name` with `context`.
    pub fn render<S: Serialize>(&self, name: &str, context: S) -> Result<String, minijinja::Error> {
        self.env
            .get_template(name)?
            .render(minijinja::value::Serde(context))
    }
}
