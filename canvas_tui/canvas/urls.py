"""Where the token may go: the base-URL rule and the Link-header rules, in one place.

`config.check_base_url` and the client both call `base_url_problem`, so "https, or plain http only to
loopback" is decided by one implementation.
"""

from __future__ import annotations

import ipaddress
import re

import httpx

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and the name localhost; never a name that merely resolves there."""
    host = host.strip("[]").lower().rstrip(".")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url_problem(url: str) -> str | None:
    """Why `url` is not a safe Canvas base URL, or None when it is."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        return f"not a URL: {exc}"
    if parsed.scheme not in ("http", "https"):
        return f"the scheme must be https (or http to loopback), not {parsed.scheme or 'missing'!r}"
    if not parsed.host:
        return "the URL has no host"
    if parsed.userinfo:
        return "the URL must not carry a user name or password"
    if parsed.query or parsed.fragment:
        return "the base URL must not carry a query or fragment"
    if parsed.scheme == "http" and not is_loopback_host(parsed.host):
        return (
            f"plain http would send the token unencrypted to {parsed.host}; "
            "use https (http is allowed only for loopback hosts such as 127.0.0.1)"
        )
    return None


def origin(url: httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in, for same-origin checks."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.scheme, url.host.lower(), port


_LINK_ENTRY = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,<]+)*)")
_REL = re.compile(r"""\brel\s*=\s*(?:"([^"]*)"|([^\s;,"]+))""", re.IGNORECASE)


def parse_link_header(value: str) -> dict[str, str]:
    """`<u1>; rel="current",<u2>; rel="next"` -> {"current": u1, "next": u2}.

    Canvas separates entries with a bare comma and may use any case for rel values; a rel may
    list several space-separated names. The first URL for a name wins.
    """
    links: dict[str, str] = {}
    for match in _LINK_ENTRY.finditer(value):
        url, params = match.group(1).strip(), match.group(2)
        for rel in _REL.finditer(params):
            for name in (rel.group(1) or rel.group(2) or "").lower().split():
                links.setdefault(name, url)
    return links


def next_link(headers: httpx.Headers) -> str | None:
    """The rel="next" URL from every Link header on a response (names match case-insensitively)."""
    for value in headers.get_list("link"):
        found = parse_link_header(value).get("next")
        if found:
            return found
    return None


def proxy_problem(base_url: str, proxy: str | None) -> str | None:
    """Why `proxy` may not carry requests to `base_url`, or None when it may (or there is none).

    Through a proxy, https travels in a CONNECT tunnel the proxy cannot read; plain http would
    hand it every request whole, the token included, so a proxy is for https base URLs only.
    """
    if not proxy:
        return None
    try:
        parsed = httpx.URL(proxy)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        return f"not a URL: {exc}"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return "expected http://host:port or https://host:port"
    if httpx.URL(base_url).scheme != "https":
        return (
            "a proxy is used only for an https base URL (through a proxy, plain http would "
            "show it the token)"
        )
    return None
