"""Signing keys, checked against the official Python SDK's own code and a recorded exchange."""

from __future__ import annotations

import json

from inngest._internal import net, server_lib

from app.drivers import signing
from tests.sdk_apps.captures import CLOUD_SIGNING_KEY, PY_REGISTER_CLOUD, PY_REPLIES

SIGNED = PY_REPLIES["cloud: POST with X-Inngest-Signature t=..&s=HMAC(key_hex_text, JCS(body)+t)"]


def test_strip_prefix() -> None:
    assert signing.strip_prefix("signkey-prod-abc123") == "abc123"
    assert signing.strip_prefix("signkey-branch_env1-abc") == "abc"
    assert signing.strip_prefix("abc123") == "abc123"


def test_hashed_key_matches_the_recorded_bearer_token() -> None:
    recorded = PY_REGISTER_CLOUD["headers"]["authorization"]
    assert signing.bearer_value(CLOUD_SIGNING_KEY) == recorded
    assert signing.hashed_key("ab" * 32) == recorded.removeprefix("Bearer ")


def test_recorded_response_signature_verifies() -> None:
    # The SDK signed the body bytes it sent: Python's default json.dumps of the ops list.
    body = json.dumps(SIGNED["body"]).encode()
    header = SIGNED["headers"]["x-inngest-signature"]
    assert signing.verify(body, header, [CLOUD_SIGNING_KEY])
    assert signing.verify(body, header, ["signkey-other-00", CLOUD_SIGNING_KEY])
    assert not signing.verify(body, header, ["signkey-test-" + "cd" * 32])
    assert not signing.verify(body + b" ", header, [CLOUD_SIGNING_KEY])
    assert not signing.verify(body, None, [CLOUD_SIGNING_KEY])
    assert not signing.verify(body, "t=1795481583", [CLOUD_SIGNING_KEY])


def test_our_request_signature_passes_the_sdk_check() -> None:
    body = signing.canonical_json({"event": {"name": "a", "data": {"n": 1.5}}, "steps": {}})
    header = signing.sign(body, CLOUD_SIGNING_KEY, 1_800_000_000)
    checked = net.validate_request_sig(
        body=body,
        headers={server_lib.HeaderKey.SIGNATURE.value: header},
        mode=server_lib.ServerKind.CLOUD,
        signing_key=CLOUD_SIGNING_KEY,
        signing_key_fallback=None,
    )
    assert checked == CLOUD_SIGNING_KEY
    # ... and the SDK's own signer agrees with ours byte for byte.
    assert net.sign_request(body, CLOUD_SIGNING_KEY, 1_800_000_000) == header


def test_signature_age() -> None:
    body = b"{}"
    header = signing.sign(body, "k", 1000)
    assert signing.verify(body, header, ["k"], now_s=1200, max_age_s=300)
    assert not signing.verify(body, header, ["k"], now_s=1400, max_age_s=300)
    assert not signing.verify(body, "t=abc&s=00", ["k"])


def test_canonical_json_is_rfc8785() -> None:
    assert signing.canonical_json({"b": [1, 2.0, 1e21], "a": "é"}) == (
        '{"a":"é","b":[1,2,1e+21]}'.encode()
    )


def test_canonical_json_refuses_nan() -> None:
    try:
        signing.canonical_json({"x": float("nan")})
    except ValueError as exc:
        assert "canonical JSON" in str(exc)
    else:
        raise AssertionError("NaN was encoded")


def test_authorization_forms() -> None:
    hashed = signing.hashed_key(CLOUD_SIGNING_KEY)
    keys = [CLOUD_SIGNING_KEY]
    assert signing.authorization_matches(f"Bearer {hashed}", keys)
    assert signing.authorization_matches(f"Bearer signkey-test-{hashed}", keys)
    assert signing.authorization_matches(f"bearer {hashed.upper()}", keys)
    assert signing.authorization_matches(f"Bearer {CLOUD_SIGNING_KEY}", keys)
    assert not signing.authorization_matches("Bearer undefined", keys)
    assert not signing.authorization_matches("Bearer", keys)
    assert not signing.authorization_matches(None, keys)
    assert not signing.authorization_matches(f"Basic {hashed}", keys)
    assert not signing.authorization_matches(f"Bearer {hashed}", [])


def test_reply_signatures_must_be_dated_within_the_call() -> None:
    """The recorded Python SDK reply, checked as the driver checks replies."""
    body = json.dumps(SIGNED["body"]).encode()
    header = SIGNED["headers"]["x-inngest-signature"]
    signed_at = int(header.split("&")[0].removeprefix("t="))
    keys = [CLOUD_SIGNING_KEY]
    ok = signing.reply_problem(body, header, keys, sent_s=signed_at - 1, received_s=signed_at)
    assert ok is None
    late = signing.reply_problem(
        body, header, keys, sent_s=signed_at + 3600, received_s=signed_at + 3601
    )
    assert late is not None and "stale or replayed" in late
    early = signing.reply_problem(
        body, header, keys, sent_s=signed_at - 900, received_s=signed_at - 899
    )
    assert early is not None and "stale or replayed" in early
    assert signing.reply_problem(body, None, keys, sent_s=0, received_s=0) == (
        "it has no X-Inngest-Signature"
    )
    forged = signing.reply_problem(
        body + b" ", header, keys, sent_s=signed_at, received_s=signed_at
    )
    assert forged == "its X-Inngest-Signature does not match"
