"""Feed URLs as people see them, and the credentials in them.

A feed URL may carry a password (``https://user:pw@host/feed``) or a key in any query
parameter (``?pw=…``, ``?k=…``, ``?x=<signed value>``): no list of secret-looking names can
know them all. So `redact_url` hides the user:password part and *every* query value (and
every ``name=value`` in the fragment), except the values of the parameters an operator
names as safe (NEWSBOT_URL_SAFE_PARAMS). Every URL a reply, a log line, an error message or
the audit log shows goes through it.

`store_url` and `carry_credentials` decide where credentials may go on to (a redirect, a
feed a page names): to the origin they were given for, never elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Final
from urllib.parse import unquote

import httpx

__all__ = [
    "carry_credentials",
    "redact_url",
    "scrub",
    "store_url",
    "strip_userinfo",
]

_MAX_URL_IN_MESSAGE: Final = 200
# Query values shorter than this are hidden in URLs but not hunted in free text: "1" or
# "en" would turn every "HTTP/1.1" of an error message into asterisks.
_MIN_SCRUBBED: Final = 3

_USERINFO: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:/*)[^/?#]*@")
_BOT_TOKEN: Final = re.compile(r"(/bot)\d+:[A-Za-z0-9_-]+")
_URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str, safe: Collection[str] = ()) -> str:
    """The URL as it may appear in messages and logs.

    No user:password; ``***`` for the value of every query parameter (a bare ``?value``
    too) and of every ``name=value`` in the fragment, unless its name is in ``safe``
    (lower case); ``***`` for a Telegram bot token in the path; non-printable characters
    as ``?``; at most 200 characters. Works on URLs too broken to parse.
    """
    shown = _USERINFO.sub(r"\1", url, count=1)
    shown = _BOT_TOKEN.sub(r"\1***", shown)
    shown = _redact_parameters(shown, safe)
    shown = "".join(ch if ch.isprintable() else "?" for ch in shown)
    if len(shown) > _MAX_URL_IN_MESSAGE:
        shown = shown[: _MAX_URL_IN_MESSAGE - 1] + "…"
    return shown


def _split(url: str) -> tuple[str, str | None, str | None]:
    """(everything before the query, the query or None, the fragment or None)."""
    rest, hash_sign, fragment = url.partition("#")
    base, question, query = rest.partition("?")
    return base, (query if question else None), (fragment if hash_sign else None)


def _parameters(part: str) -> list[tuple[str, str | None]]:
    """``a=1&b;c`` → [("a", "1"), ("b", None), ("c", None)]; empty pieces kept as ("", None)."""
    found: list[tuple[str, str | None]] = []
    for piece in re.split(r"[&;]", part):
        name, equals, value = piece.partition("=")
        found.append((name, value) if equals else (piece, None))
    return found


def _hidden(name: str, value: str | None, safe: Collection[str], *, bare_hidden: bool) -> bool:
    """Whether a parameter's value is a possible secret to hide."""
    if value is None:
        # A bare ``?abc123`` is a value (some services take their key that way); a bare
        # fragment (``#comments``) is an anchor in the page.
        return bare_hidden and bool(name) and unquote(name).lower() not in safe
    return bool(value) and unquote(name).lower() not in safe


def _redact_part(part: str, safe: Collection[str], *, bare_hidden: bool) -> str:
    pieces = []
    for name, value in _parameters(part):
        if not _hidden(name, value, safe, bare_hidden=bare_hidden):
            pieces.append(name if value is None else f"{name}={value}")
        else:
            pieces.append("***" if value is None else f"{name}=***")
    # Rejoin with the separators of the original, in order.
    separators = re.findall(r"[&;]", part)
    return pieces[0] + "".join(sep + piece for sep, piece in zip(separators, pieces[1:], strict=True))


def _redact_parameters(url: str, safe: Collection[str]) -> str:
    base, query, fragment = _split(url)
    shown = base
    if query is not None:
        shown += "?" + _redact_part(query, safe, bare_hidden=True)
    if fragment is not None:
        hidden = _redact_part(fragment, safe, bare_hidden=False) if "=" in fragment else fragment
        shown += "#" + hidden
    return shown


def strip_userinfo(url: str) -> str:
    return _USERINFO.sub(r"\1", url, count=1)


def store_url(requested: str, final: httpx.URL) -> str:
    """``final`` with the user:password of ``requested`` where they may go, else without.

    That is the origin they were given for, and its upgrade from http to https on the
    default ports — the one other place httpx sends them (RFC 9110 §11.6.1's "protection
    space" is the origin; a server redirecting from http to https on the same host keeps
    it). Userinfo a server put in a redirect is never kept.
    """
    plain = strip_userinfo(str(final))
    match = _USERINFO.match(requested)
    if match is None:
        return plain
    userinfo = match.group(0)[len(match.group(1)) : -1]
    start = httpx.URL(requested)
    same_origin = (start.scheme, start.host, start.port) == (final.scheme, final.host, final.port)
    upgrade = (
        (start.scheme, final.scheme) == ("http", "https")
        and start.host == final.host
        and start.port is None
        and final.port is None
    )
    if not (same_origin or upgrade):
        return plain
    scheme, sep, rest = plain.partition("://")
    return f"{scheme}{sep}{userinfo}@{rest}"


def carry_credentials(from_url: str, to_url: str) -> str:
    """``to_url`` (e.g. a feed a page names) with ``from_url``'s user:password where they
    may go, as for a redirect; unchanged if it does not parse (fetching it will say why)."""
    try:
        return store_url(from_url, httpx.URL(to_url))
    except (httpx.InvalidURL, ValueError, TypeError):
        return to_url


def _secrets(url: str, safe: Collection[str]) -> set[str]:
    """What must not appear in a message about ``url``: its userinfo and hidden values."""
    found: set[str] = set()
    match = _USERINFO.match(url)
    if match is not None:
        userinfo = match.group(0)[len(match.group(1)) : -1]
        user, _, password = userinfo.partition(":")
        found.update({user, unquote(user), password, unquote(password)})
    _, query, fragment = _split(url)
    for part, bare_hidden in ((query, True), (fragment, False)):
        if part is None:
            continue
        for name, value in _parameters(part):
            if _hidden(name, value, safe, bare_hidden=bare_hidden):
                secret = name if value is None else value
                if len(secret) >= _MIN_SCRUBBED:
                    found.update({secret, unquote(secret)})
    for token in _BOT_TOKEN.finditer(url):
        found.add(url[token.end(1) : token.end()])
    return {secret for secret in found if secret}


def scrub(text: str, urls: Iterable[str], safe: Collection[str] = ()) -> str:
    """``text`` (an exception's message) with every URL in it redacted and every secret of
    ``urls`` (the URLs the failing request involved) replaced by ``***``; at most 200
    characters."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0), safe), text)
    secrets: set[str] = set()
    for url in urls:
        secrets |= _secrets(url, safe)
    for secret in sorted(secrets, key=len, reverse=True):
        text = re.sub(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])", "***", text)
    return text[:200]
