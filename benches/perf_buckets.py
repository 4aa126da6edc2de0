#!/usr/bin/env python3
"""Buckets a perf profile of the bridge by what the bridge was doing (docs/benchmarks.md).

Usage:
    perf script -i perf.data -F tid,ip,sym,dso | python3 benches/perf_buckets.py entry|login

`login` also buckets a profile of the full-login benchmark's bare login server (its process is
the benchmark binary started with `--bare-login-server`), so the two can be compared.

Each sample goes to one bucket: kernel samples inside the scheduler are "thread wake-ups and
context switches"; every other sample is walked from the innermost frame outwards and lands in
the first bucket one of its frames names (so malloc called by the store counts as the store).
Needs a profile of an unstripped build, recorded with call graphs (`--call-graph dwarf`).
"""

import collections
import sys

# (bucket, substrings of frame names), per workload. Order matters only within one frame.
BUCKETS = {
    "entry": [
        ("logging: tracing-subscriber, write(2) of log lines",
         ["tracing_subscriber", "tracing_core::", "ext4_"]),
        ("metrics counter", ["metrics::", "metrics_exporter"]),
        ("authorization request: state, nonce, PKCE, URL",
         ["Provider::authorization_request", "AuthorizationEndpoint::request"]),
        ("login cookie: serde_json + AES-GCM seal",
         ["flow::store", "BridgeCookies::store_login"]),
        ("DiscourseConnect verify, return_sso_url check",
         ["SsoRequest::verify", "discourse::connect", "is_forum_sso_login"]),
        ("Accept-Language negotiation", ["Pages::language", "Localizer::negotiate"]),
        ("rate limit (governor)", ["governor::", "tower_governor", "FailureBudget"]),
        ("kernel: loopback TCP send/receive",
         ["tcp_", "sock_", "__sys_sendto", "__sys_recvfrom", "do_writev", "inet_", "skb",
          "ip_", "net_rx", "__netif", "loopback"]),
        ("cookie jar: parse Cookie, encode Set-Cookie (tower-cookies)",
         ["tower_cookies", "cookie::"]),
        ("/sso handler and login service, other",
         ["login::start", "LoginService::start"]),
        ("middleware: request id, span, client address, timeout, limits, headers",
         ["middleware::", "tower_http", "client_ip::", "tokio::time"]),
        ("HTTP/1 server: hyper parse/encode, axum routing, connection loop",
         ["hyper::", "axum::", "http::", "hyper_util::"]),
        ("tokio runtime", ["tokio::"]),
    ],
    "login": [
        ("store: redb write transactions, fdatasync included",
         ["redb::", "LogoutStore", "RedbStore", "store::redb", "fdatasync", "login_writer::"]),
        ("ID token: RS256 signature (ring; rsa / num-bigint-dig before)",
         ["ring_core", "ring::rsa", "ring::arithmetic", "VerifyingKey", "verify_rsa_signature",
          "num_bigint_dig"]),
        ("ID token: other checks", ["id_token::validate", "verify_with_key_refresh"]),
        ("claim mapping", ["mapping::", "minijinja"]),
        ("logging: tracing-subscriber, write(2) of log lines",
         ["tracing_subscriber", "tracing_core::"]),
        ("HTTP client to the IdP: token + userinfo (reqwest, oauth2, openidconnect, JSON)",
         ["reqwest::", "hyper_util::client", "oauth2::", "openidconnect::", "hyper::client",
          "serde_path_to_error", "outbound::", "rustls::"]),
        ("authorization request: state, nonce, PKCE, URL",
         ["Provider::authorization_request", "AuthorizationEndpoint::request"]),
        ("login cookie seal/open, session cookie",
         ["flow::", "BridgeCookies::", "in_flight::"]),
        ("DiscourseConnect verify + sign", ["discourse::connect", "is_forum_sso_login"]),
        ("Accept-Language negotiation", ["Pages::language", "Localizer::negotiate"]),
        ("rate limit (governor)", ["governor::", "tower_governor", "FailureBudget"]),
        ("kernel: loopback TCP send/receive, accept",
         ["tcp_", "sock_", "__sys_sendto", "__sys_recvfrom", "do_writev", "inet_", "skb",
          "ip_", "net_rx", "__netif", "accept", "__sys_shutdown", "__x64_sys_shutdown"]),
        ("cookie jar: parse Cookie, encode Set-Cookie (tower-cookies)",
         ["tower_cookies", "cookie::"]),
        ("/sso and /callback handlers, login service, other",
         ["login::start", "login::callback", "LoginService::", "full_login::bare"]),
        ("middleware: request id, span, client address, timeout, limits, headers",
         ["middleware::", "tower_http", "client_ip::", "tokio::time"]),
        ("HTTP/1 server: hyper parse/encode, axum routing, connection loop",
         ["hyper::", "axum::", "http::", "hyper_util::"]),
        ("tokio runtime", ["tokio::"]),
    ],
}
SCHEDULER = ["finish_task_switch", "__schedule", "schedule", "futex"]


def samples(lines):
    """Yields each sample's frames, innermost first, as (symbol, dso) pairs."""
    frames = []
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith("\t"):
            _address, _, rest = line.strip().partition(" ")
            symbol, _, dso = rest.rpartition(" (")
            frames.append((symbol.strip(), dso.rstrip(")")))
        elif frames:
            yield frames
            frames = []
    if frames:
        yield frames


def bucket(frames, buckets):
    if "kernel" in frames[0][1]:
        kernel = [symbol for symbol, dso in frames if "kernel" in dso]
        in_scheduler = any(s in symbol for symbol in kernel for s in SCHEDULER)
        syncing = any("fdatasync" in symbol for symbol, _ in frames)
        if in_scheduler and not syncing:
            return "kernel: thread wake-ups and context switches"
    for symbol, _ in frames:
        for name, keys in buckets:
            if any(key in symbol for key in keys):
                return name
    return "other (allocator, libc, unresolved)"


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in BUCKETS:
        sys.exit(__doc__)
    buckets = BUCKETS[sys.argv[1]]
    counts = collections.Counter()
    kernel = 0
    for frames in samples(sys.stdin):
        counts[bucket(frames, buckets)] += 1
        kernel += "kernel" in frames[0][1]
    total = sum(counts.values())
    if total == 0:
        sys.exit("no samples with call graphs on stdin")
    for name, count in counts.most_common():
        print(f"{100 * count / total:5.1f}%  {name}")
    print(f"{total} samples, {100 * kernel / total:.0f}% of them in the kernel")


if __name__ == "__main__":
    main()
