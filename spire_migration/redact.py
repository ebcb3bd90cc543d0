"""Keep secrets out of logs, reports, tracebacks and the journal.

Three nets, applied together by :func:`redact`:

* every secret the suite has seen (:func:`register_secret`, which
  :class:`~spire_migration.secret.Secret` calls) is replaced wherever it appears;
* a value is redacted by the *name* it is given: ``password``, ``secret``,
  ``token``, ``key``, ``connection_string``... in HCL (``k = "v"``, heredocs),
  JSON and dict reprs (``"k": "v"``, ``'k': 'v'``, escaped quotes too),
  logfmt and dataclass reprs (``k=v``, ``k='v'``) and command lines
  (``-joinToken v``, ``--k=v``, ``'-joinToken', 'v'`` in an argv repr);
* patterns: a join_token agent ID carries its token (replaced by a short
  fingerprint that still tells agents apart), a URL's ``user:password@``.

>>> redact("spiffe://example.org/spire/agent/join_token/0d1f5c2e-aaaa-bbbb-cccc-1234567890ab")
'spiffe://example.org/spire/agent/join_token/<redacted:60b0bd94>'
>>> redact("spire-agent run -joinToken 0d1f5c2e-aaaa -config a.conf")
'spire-agent run -joinToken <redacted> -config a.conf'
>>> redact('devid_password = "Tpm\\\\"Pw-1"')
'devid_password = "<redacted>"'
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterable

MASK = "<redacted>"
_SECRETS: set[str] = set()

#: Words that make a name secret (compared with a name's parts, case-insensitively).
_SECRET_WORDS = {"password", "passwd", "passphrase", "secret", "token", "tokens", "credential",
                 "credentials", "authorization", "dsn", "jointoken"}
#: A name ending in one of these holds a reference or a property, not the secret itself.
_HARMLESS_LAST = {"file", "path", "dir", "type", "name", "id", "ttl", "manager", "size", "len",
                  "length", "alias", "algorithm", "alg", "hash", "fingerprint", "usage", "env"}
_KEY_PREFIXES = {"api", "private", "secret", "access", "signing", "encryption", "client", "master", "auth"}

_JOIN_TOKEN_ID = re.compile(r"(join_token/)([A-Za-z0-9._~-]+)")
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:)([^\s@/'\"]+)(@)")
_UUID_VALUE = re.compile(r"""(["']?value["']?\s*[:=]\s*["'])([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"""
                         r"""[0-9a-f]{12})(["'])""")
#: ``name`` followed by ``=`` or ``:`` (the name optionally quoted, with escaped quotes too).
_NAMED = re.compile(r"""(?<![\w-])(?P<q>\\*["'])?(?P<key>[A-Za-z][A-Za-z0-9_.-]*)(?(q)(?P=q))[ \t]*"""
                    r"""(?P<sep>[:=])[ \t]*""")
#: A command-line flag and its value: ``-k v``, ``--k=v``, ``'-k', 'v'`` (an argv repr).
_FLAG = re.compile(r"""(?<![\w-])(?P<flag>--?[A-Za-z][A-Za-z0-9_-]*)(?P<sep>=|[ \t]+|["'],[ \t]*["'])"""
                   r"""(?P<val>[^\s"',)\]]+)""")
_HEREDOC = re.compile(r"<<-?([A-Za-z_][A-Za-z0-9_]*)[ \t]*\n")
_NOT_A_VALUE = {"None", "True", "False", "null", "nil"}
_BARE_VALUE = re.compile(r"""[^\s,;&)\]}'"]+""")


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible name for a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def register_secret(secret: str) -> None:
    """Redact this exact string wherever it appears from now on."""
    if secret and len(secret) >= 6:
        _SECRETS.add(secret)


def _parts(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip("-"))
    return [p for p in re.split(r"[_.\-]+", spaced.lower()) if p]


def is_secret_name(name: str) -> bool:
    """True when a value called ``name`` is a secret (``devid_password``, ``-joinToken``, ``api_key``).

    >>> [is_secret_name(n) for n in ("join_token", "join_token_file", "KeyManager", "private_key", "key_type")]
    [True, False, False, True, False]
    """
    parts = _parts(name)
    if not parts or parts[-1] in _HARMLESS_LAST:
        return False
    if any(p in _SECRET_WORDS for p in parts) or "".join(parts) in ("connectionstring", "jointoken"):
        return True
    return parts[-1] == "key" and (len(parts) == 1 or parts[-2] in _KEY_PREFIXES)


def _close(text: str, start: int, quote: str) -> int:
    """Index of the quote that closes a value opened by ``quote`` (which may carry backslashes)."""
    depth, char = len(quote) - 1, quote[-1]
    i = start
    while i < len(text):
        if text[i] == "\n":
            return i
        if text[i] == "\\" or text[i] == char:
            j = i
            while j < len(text) and text[j] == "\\":
                j += 1
            if j < len(text) and text[j] == char and j - i == depth:
                return i
            i = j + 1
            continue
        i += 1
    return len(text)


def _redact_named(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _NAMED.finditer(text):
        if m.start() < pos or not is_secret_name(m.group("key")):
            continue
        i = m.end()
        rest = text[i:]
        quote = re.match(r"\\*[\"']", rest)
        heredoc = _HEREDOC.match(rest)
        if quote:
            start = i + len(quote.group())
            end = _close(text, start, quote.group())
            if text[start:end] in (MASK, "") or text[start:end].startswith("<redacted"):
                continue
            out += [text[pos:start], MASK]
            pos = end
        elif heredoc:
            body_start = i + heredoc.end()
            closing = re.compile(rf"^[ \t]*{re.escape(heredoc.group(1))}[ \t]*$", re.M).search(text, body_start)
            end = closing.start() if closing else len(text)
            out += [text[pos:body_start], MASK + "\n"]
            pos = end
        elif m.group("sep") == "=" and (bare := _BARE_VALUE.match(rest)) and not bare.group().startswith("<") \
                and bare.group() not in _NOT_A_VALUE and _parts(m.group("key")) != ["key"]:  # key=len: code
            out += [text[pos:i], MASK]
            pos = i + bare.end()
    out.append(text[pos:])
    return "".join(out)


def _redact_flags(text: str) -> str:
    def sub(m: re.Match) -> str:
        if not is_secret_name(m.group("flag")) or m.group("val").startswith(("<redacted", "-")):
            return m.group()
        return m.group("flag") + m.group("sep") + MASK
    return _FLAG.sub(sub, text)


def redact(text: str) -> str:
    """Return ``text`` with every known secret, secret-named value and secret pattern replaced."""
    if not text or not isinstance(text, str):
        return text
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, f"<redacted:{fingerprint(secret)}>")
    text = _JOIN_TOKEN_ID.sub(lambda m: m.group(1) + (
        m.group(2) if m.group(2).startswith("<redacted") else f"<redacted:{fingerprint(m.group(2))}>"), text)
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    text = _UUID_VALUE.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    text = _redact_flags(text)
    return _redact_named(text)


def redact_argv(argv: Iterable[str]) -> tuple[str, ...]:
    """An argv with the value of every secret-named flag masked (``-joinToken X``, ``--password=X``)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if arg.startswith("-") and is_secret_name(flag):
            out.append(f"{flag}={MASK}" if eq else arg)
            hide_next = not eq
        else:
            out.append(redact(arg))
    return tuple(out)


def redact_obj(value: Any) -> Any:
    """Redact every string inside a JSON-like structure; a secret-named key's value goes whole."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_obj(k): (MASK if isinstance(k, str) and is_secret_name(k) and isinstance(v, (str, bytes))
                                else redact_obj(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_obj(v) for v in value]
    if hasattr(value, "reveal"):   # a Secret
        return str(value)
    return value
