//! Development-only demo: a built-in OpenID provider and a stand-in forum around the real bridge, all on loopback.
