//! HTML pages rendered with minijinja from the templates embedded at build time.
