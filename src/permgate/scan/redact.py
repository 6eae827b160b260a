"""Key-like values found in app code never reach the scan's output (issue 25).

App code holds secrets (a test key pasted into a client, a webhook secret in a config file):
the scan quotes source text in call labels, account reasons and escapes, so every output
format passes through `redact` last. What a key is stays visible (its prefix, so a reader
knows a live secret key was in the code); its value does not.
"""

from __future__ import annotations

import re

MASK = "[REDACTED]"

# Stripe's key and token formats (prefix kept, value masked): secret, restricted and
# publishable keys, ephemeral keys, webhook signing secrets, OAuth refresh tokens and
# authorisation codes, client secrets of intents and sessions; then generic bearer values
# (OAuth access tokens of any provider) and JSON Web Tokens.
_PREFIXED = re.compile(
    r"\b((?:sk|rk|pk|ek)_(?:live|test)_|whsec_|rt_|ac_|uk_|"
    r"(?:pi|seti|cs|cs_live|cs_test)_[A-Za-z0-9]+_secret_)"
    r"[A-Za-z0-9]+"
)
_BEARER = re.compile(r"(?i)\b(Bearer\s+)(?![{$`'\"])[A-Za-z0-9._~+/=-]{12,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
# rt_/ac_/uk_ are short words in ordinary identifiers (`rt_cache`); only values that look
# random (long, with a digit) are tokens.
_SHORT_PREFIXES = ("rt_", "ac_", "uk_")


def _prefixed(m: re.Match[str]) -> str:
    prefix, value = m.group(1), m.group(0)[len(m.group(1)):]
    if prefix in _SHORT_PREFIXES and (len(value) < 16 or not any(c.isdigit() for c in value)):
        return m.group(0)
    return prefix + MASK


def redact(text: str) -> str:
    """`text` with every key-like value masked (cheap when there is none)."""
    if "_" in text:
        text = _PREFIXED.sub(_prefixed, text)
    if "earer" in text:
        text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    return text
