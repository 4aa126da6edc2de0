//! The one error type of the request path and its single conversion into an HTML error page.
