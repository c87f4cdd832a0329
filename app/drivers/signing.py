"""Signing keys as the Inngest SDKs use them: request/response HMACs and the hashed bearer key.

A signing key looks like `signkey-<env>-<hex>`. Both forms below drop the `signkey-<env>-`
prefix first (PROTOCOL.md 1.4, 3.1):

- HMAC: key = the remaining hex *text* as UTF-8 bytes (not hex-decoded); mac = HMAC-SHA256 over
  `body || str(unix seconds)`; header `X-Inngest-Signature: t=<seconds>&s=<hex>`. Requests are
  signed over their JCS (RFC 8785) form, which is also what we send, so SDKs that re-canonicalise
  before verifying see the same bytes. Replies are signed over their raw bytes, and must be
  dated within the call they answer (`reply_problem`).
- Bearer: `sha256(bytes.fromhex(hex))` as hex, sent by SDKs as `Authorization: Bearer <hash>`
  (Python) or `Bearer signkey-<env>-<hash>` (spec, JS) on `/fn/register` and `/v0/runs/...`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import urllib.parse

import jcs  # type: ignore[import-untyped,unused-ignore]

from app.models import JSON

SIGNATURE_HEADER = "X-Inngest-Signature"
MAX_SIGNATURE_AGE_S = 300
"""SDKs refuse request signatures older than this (the Python SDK does not check); Stepline
refuses reply signatures dated further than this outside the call (`reply_problem`)."""

_PREFIX = re.compile(r"^signkey-\w+-")
MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer a double (a JS number) holds exactly, with all below it."""


def server_kind(signing_key: str | None) -> str:
    """`cloud` in production mode (a signing key is set), else `dev`: what we announce in
    `X-Inngest-Server-Kind` and what `X-Inngest-Expected-Server-Kind` must say."""
    return "cloud" if signing_key else "dev"


def strip_prefix(key: str) -> str:
    """The key without its `signkey-<env>-` prefix (unchanged if it has none)."""
    return _PREFIX.sub("", key.strip(), count=1)


def canonical_json(value: JSON) -> bytes:
    """`value` as RFC 8785 (JCS) bytes: sorted keys, no whitespace, ECMAScript number forms
    (every number written as the double nearest to it, so integers beyond 2**53 are rounded).

    Raises ValueError for values JSON cannot carry (NaN, infinities).
    """
    try:
        out = jcs.canonicalize(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"cannot encode as canonical JSON: {exc}") from exc
    if not isinstance(out, bytes):
        raise ValueError("cannot encode as canonical JSON")
    return out


def request_json(value: JSON, *, signed: bool = True) -> tuple[bytes, bytes]:
    """(bytes to send, bytes to sign) for a request body.

    Both SDKs verify a request's signature over the JCS form of the body they parsed, not over
    the bytes received; JCS rounds integers beyond 2**53 (snowflake ids, say) to doubles. So we
    sign the JCS form but send those integers exactly (the rest is JCS too): a Python app reads
    them exactly, a JS app rounds them as it always would, and both signatures check.
    Unsigned (dev mode), the body is plain compact JSON with sorted keys (C-encoded, so cheaper;
    integers exact); the second item is then that same body.
    Raises ValueError for values JSON cannot carry (NaN, infinities).
    """
    if not signed:
        try:
            text = json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot encode as JSON: {exc}") from exc
        body = text.encode("utf-8")
        return body, body
    signed_form = canonical_json(value)
    if not _has_big_int(value):
        return signed_form, signed_form
    big: list[int] = []
    marker = secrets.token_hex(8)
    marked = _mark_big_ints(value, marker, big)
    sent = canonical_json(marked)
    for index, number in enumerate(big):
        sent = sent.replace(f'"\\u0000{marker}:{index}"'.encode(), str(number).encode(), 1)
    return sent, signed_form


def _has_big_int(value: JSON) -> bool:
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif type(item) is int and abs(item) > MAX_SAFE_INTEGER:
            return True
    return False


def _mark_big_ints(value: JSON, marker: str, big: list[int]) -> JSON:
    """`value` with each integer beyond 2**53 replaced by a unique marker string (appended to
    `big`); containers are copied only when something in them changed."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) <= MAX_SAFE_INTEGER:
            return value
        big.append(value)
        return f"\x00{marker}:{len(big) - 1}"
    if isinstance(value, dict):
        items = {k: _mark_big_ints(v, marker, big) for k, v in value.items()}
        return items if any(items[k] is not v for k, v in value.items()) else value
    if isinstance(value, list):
        marked = [_mark_big_ints(v, marker, big) for v in value]
        return marked if any(m is not v for m, v in zip(marked, value, strict=True)) else value
    return value


def _mac(body: bytes, key: str, timestamp: str | None) -> str:
    digest = hmac.new(strip_prefix(key).encode("utf-8"), body, hashlib.sha256)
    if timestamp:
        digest.update(timestamp.encode("utf-8"))
    return digest.hexdigest()


def sign(body: bytes, key: str, now_s: int) -> str:
    """The `X-Inngest-Signature` value for `body` (the exact bytes sent) at `now_s`."""
    return f"t={now_s}&s={_mac(body, key, str(now_s))}"


def _parse(header: str) -> tuple[str, str | None]:
    """(signature, timestamp or None) from `t=<seconds>&s=<hex>`."""
    parsed = urllib.parse.parse_qs(header.strip(), keep_blank_values=True)
    signature = (parsed.get("s") or [""])[0]
    timestamp = parsed["t"][0] if parsed.get("t") else None
    return signature, timestamp


def _matches(body: bytes, signature: str, timestamp: str | None, keys: list[str]) -> bool:
    return any(
        hmac.compare_digest(signature.lower(), _mac(body, key, timestamp)) for key in keys if key
    )


def verify(
    body: bytes,
    header: str | None,
    keys: list[str],
    *,
    now_s: int | None = None,
    max_age_s: int | None = None,
) -> bool:
    """True if `header` signs `body` with one of `keys` (primary first, then fallbacks).

    With `now_s` and `max_age_s`, a signature whose `t` is further than `max_age_s` from
    `now_s` (either way) is refused. A header without `t` is checked over the body alone, as the
    SDKs do for requests.
    """
    if not header:
        return False
    signature, timestamp = _parse(header)
    if not signature:
        return False
    if timestamp is not None:
        if not timestamp.isdigit():
            return False
        if now_s is not None and max_age_s is not None and abs(now_s - int(timestamp)) > max_age_s:
            return False
    return _matches(body, signature, timestamp, keys)


def reply_problem(
    body: bytes,
    header: str | None,
    keys: list[str],
    *,
    sent_s: int,
    received_s: int,
    window_s: int = MAX_SIGNATURE_AGE_S,
) -> str | None:
    """Why the signature of an SDK app's reply is not acceptable, or None if it is.

    Both SDKs sign a reply as they sign a request: HMAC over the body bytes and `t`, the unix
    seconds when they answered. So a reply must carry `t`, and `t` must fall within the call:
    not before `sent_s` (when we signed the request) nor after `received_s`, give or take
    `window_s` of clock skew (the age window SDKs allow requests). A reply recorded from an
    earlier call is refused once the window has passed. The SDKs sign nothing of the request
    into a reply, so that is as tightly as a reply can be bound to its request. (Inngest's own
    executor checks no reply signature at all.)
    """
    if not header:
        return "it has no X-Inngest-Signature"
    signature, timestamp = _parse(header)
    if not signature:
        return "its X-Inngest-Signature has no signature"
    if timestamp is None or not timestamp.isdigit():
        return "its X-Inngest-Signature has no timestamp"
    if not _matches(body, signature, timestamp, keys):
        return "its X-Inngest-Signature does not match"
    signed_at = int(timestamp)
    if not sent_s - window_s <= signed_at <= received_s + window_s:
        return (
            f"its signature is dated t={signed_at}, outside the call (sent at {sent_s}, "
            f"answered by {received_s}, give or take {window_s} s): a stale or replayed reply"
        )
    return None


def hashed_key(key: str) -> str:
    """The key as sent in `Authorization: Bearer`: sha256 of the hex-decoded key, as hex.

    A key that is not hex (not an Inngest key) is hashed as UTF-8 text instead.
    """
    raw = strip_prefix(key)
    try:
        material = bytes.fromhex(raw)
    except ValueError:
        material = raw.encode("utf-8")
    return hashlib.sha256(material).hexdigest()


def bearer_value(key: str) -> str:
    """The `Authorization` header value an SDK sends for `key`."""
    return f"Bearer {hashed_key(key)}"


def authorization_matches(header: str | None, keys: list[str]) -> bool:
    """True if an `Authorization: Bearer ...` header carries one of `keys`.

    Accepted tokens: the hashed key with or without a `signkey-<env>-` prefix (Python sends it
    bare, the spec and JS prefixed), or the signing key itself.
    """
    if not header:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    token = strip_prefix(token.strip()).lower()
    if not token:
        return False
    for key in keys:
        if not key:
            continue
        for expected in (hashed_key(key), strip_prefix(key).lower()):
            if hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
                return True
    return False
