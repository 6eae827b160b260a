"""Key-like values found in app code never reach the scan's output (issue 25).

App code holds secrets (a test key pasted into a client, a webhook secret in a config file):
the scan quotes source text in call labels, account reasons and escapes, so every output
format passes through `redact` last. What a key is stays visible (its prefix, so a reader
knows a live secret key was in the code); its value does not.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "[REDACTED]"

# Code splits and wraps literals: a key is quoted as `'sk_' + 'live_' + '51H…'`, `"sk_live_"
# "51H…"`, `` `sk_test_${'51H…'}` ``, `f"sk_live_{'51H…'}"` or `'sk_test_' . '51H…'`. Between
# two characters of a key the mask therefore also crosses such glue: a closing quote, an
# optional concatenation operator (+ in JS/Python/Ruby, . in PHP, nothing in Python), an
# opening quote; or the start or end of an interpolation of a literal. A bare variable
# (`'sk_live_' + rest`) is no glue: its name is not a secret.
_GLUE = r"""(?:\\?["'`]\s*[+.]?\s*\\?["'`]|\$?\{\s*\\?["'`]|\\?["'`]\s*\})"""


def _spelt(word: str) -> str:
    """`word` as a pattern that also matches it split by glue between any two characters."""
    return f"(?:{_GLUE})?".join(re.escape(c) for c in word)


# Stripe's key and token formats (prefix kept, value masked): secret, restricted and
# publishable keys, ephemeral keys, webhook signing secrets. These prefixes are distinctive,
# so no word boundary is asked before them: a key follows `KEY_`, an escape (`\n`, `\u000a`)
# or a URL-encoded `%3D` in the text the scan quotes.
_STRONG = "|".join(_spelt(p) for p in (
    "sk_live_", "sk_test_", "rk_live_", "rk_test_", "pk_live_", "pk_test_", "ek_live_",
    "ek_test_", "whsec_"))
# OAuth refresh tokens and authorisation codes, and the "uk_" keys: short words in ordinary
# identifiers (`rt_cache`), so only values that look random (long, with a digit) are tokens.
_SHORT = "rt_|ac_|uk_"
_CHAR = f"(?:{_GLUE})?[A-Za-z0-9]"
_PREFIXED = re.compile(
    rf"((?:{_STRONG})|(?<![A-Za-z0-9])(?:{_SHORT}))(?:{_CHAR})+"
    # client secrets of intents and sessions: their id part is no secret, the rest is
    r"|((?:pi|seti|cs|cs_live|cs_test)_[A-Za-z0-9]+_secret_)[A-Za-z0-9]+"
)
_SHORT_PREFIXES = ("rt_", "ac_", "uk_")
# Then generic bearer or basic credentials (OAuth access tokens of any provider, a key given
# as a basic-auth user) and JSON Web Tokens.
_BEARER = re.compile(r"(?i)\b((?:Bearer|Basic)\s+)(?![{$`'\"])[A-Za-z0-9._~+/=-]{12,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


def _prefixed(m: re.Match[str]) -> str:
    prefix = m.group(1) or m.group(2)
    value = m.group(0)[len(prefix):]
    if prefix in _SHORT_PREFIXES and (len(value) < 16 or not any(c.isdigit() for c in value)):
        return m.group(0)
    return prefix + MASK


def redact(text: str) -> str:
    """`text` with every key-like value masked (cheap when there is none)."""
    if "_" in text:
        text = _PREFIXED.sub(_prefixed, text)
    if "earer" in text or "asic" in text:
        text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    return text


def redact_doc(doc: Any) -> Any:
    """A JSON-like document with every string in it (keys too) passed through `redact`.

    Documents are masked before they are serialised, never after: the glue a split key is
    masked across contains quotes, and masking JSON text could then cross a string's end.
    """
    if isinstance(doc, str):
        return redact(doc)
    if isinstance(doc, dict):
        return {redact_doc(k): redact_doc(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [redact_doc(v) for v in doc]
    return doc
