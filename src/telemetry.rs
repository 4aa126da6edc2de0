//! Logging setup (`tracing`, text or JSON) and request spans.
