//! HTML pages rendered with minijinja from the templates in `templates/`, embedded at build time
//! so the binary is self-contained. Auto-escaping is on for every `.html` template.

use minijinja::Environment;
use serde::Serialize;

/// The page templates, compiled once at start-up and shared read-only.
#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("error.html", include_str!("../templates/error.html")),
    (
        "logged_out.html",
        include_str!("../templates/logged_out.html"),
    ),
    (
        "demo_forum.html",
        include_str!("../templates/demo_forum.html"),
    ),
    (
        "demo_idp_login.html",
        include_str!("../templates/demo_idp_login.html"),
    ),
];

impl Pages {
    /// Compiles every embedded template.
    pub fn new() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Self { env })
    }

    /// Renders `name` with `context`.
    pub fn render<S: Serialize>(&self, name: &str, context: S) -> Result<String, minijinja::Error> {
        self.env
            .get_template(name)?
            .render(minijinja::value::Serde(context))
    }
}
