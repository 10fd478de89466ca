"""Login tokens: who a connection is, signed by the server's secret.

A token is three dot-separated parts, all URL-safe base64 without
padding::

    v1 . <claims> . <signature>

``claims`` is a compact JSON object: ``u`` the user id, ``d`` the device
the token is bound to (absent: any device), ``exp`` the expiry in Unix
seconds. ``signature`` is HMAC-SHA256 over ``v1.<claims>`` with the
server's secret. Why this shape and not a JWT library:

- the server is the only issuer and the only verifier, so a shared
  secret is enough and there is no algorithm to negotiate (the
  ``alg: none`` family of JWT mistakes cannot happen here);
- the version prefix is signed too, so a later format cannot be passed
  off as this one.

Verification compares signatures in constant time and reads the claims
only after the signature holds: nothing from an unsigned token is ever
parsed as JSON.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_TTL",
    "BadToken",
    "TokenClaims",
    "TokenError",
    "TokenExpired",
    "issue_token",
    "load_or_create_secret",
    "read_secret",
    "verify_token",
]

_VERSION = "v1"
# A day: long enough for a chat session, short enough that a leaked
# token dies on its own.
DEFAULT_TTL = 24 * 3600.0
# 32 random bytes: the HMAC-SHA256 block of security; more adds nothing.
_SECRET_SIZE = 32
# Tokens come from the network; refuse absurd ones before any decoding.
_MAX_TOKEN_LENGTH = 2048
# User and device ids travel in the protocol's Id fields.
_MAX_ID_LENGTH = 64


class TokenError(Exception):
    """A token the server will not accept. ``code`` names the protocol's
    error code (an ``ErrorCode`` member's name)."""

    code = "BAD_TOKEN"


class BadToken(TokenError):
    """Not a token of ours: malformed, or signed with another secret."""


class TokenExpired(TokenError):
    code = "TOKEN_EXPIRED"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user: str
    device: str | None
    expires_at: float


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _sign(secret: bytes, signed_part: str) -> bytes:
    return hmac.new(secret, signed_part.encode(), hashlib.sha256).digest()


def issue_token(
    secret: bytes,
    user: str,
    device: str | None = None,
    ttl: float = DEFAULT_TTL,
    now: float | None = None,
) -> str:
    """A token for ``user`` (bound to ``device`` if given), valid for
    ``ttl`` seconds from ``now`` (default: the current time)."""
    if not user or len(user) > _MAX_ID_LENGTH:
        raise ValueError(f"user must be 1..{_MAX_ID_LENGTH} characters")
    if device is not None and not 0 < len(device) <= _MAX_ID_LENGTH:
        raise ValueError(f"device must be 1..{_MAX_ID_LENGTH} characters")
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, got {ttl}")
    issued = time.time() if now is None else now
    claims: dict[str, object] = {"u": user, "exp": int(issued + ttl)}
    if device is not None:
        claims["d"] = device
    payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False)
    signed_part = f"{_VERSION}.{_b64encode(payload.encode())}"
    return f"{signed_part}.{_b64encode(_sign(secret, signed_part))}"


def verify_token(
    secret: bytes, token: str, now: float | None = None
) -> TokenClaims:
    """The claims of a valid token; BadToken or TokenExpired otherwise."""
    if len(token) > _MAX_TOKEN_LENGTH:
        raise BadToken("token too long")
    signed_part, _, signature_text = token.rpartition(".")
    version, _, claims_text = signed_part.partition(".")
    if version != _VERSION or not claims_text or not signature_text:
        raise BadToken("not a netim token")
    try:
        signature = _b64decode(signature_text)
    except (binascii.Error, ValueError):
        raise BadToken("token signature is not base64") from None
    if not hmac.compare_digest(signature, _sign(secret, signed_part)):
        raise BadToken("token signature does not match")
    # Signed by us, so well-formed unless our own issuer is broken.
    claims = json.loads(_b64decode(claims_text))
    expires_at = float(claims["exp"])
    if (time.time() if now is None else now) >= expires_at:
        raise TokenExpired("token expired")
    return TokenClaims(claims["u"], claims.get("d"), expires_at)


def read_secret(path: Path) -> bytes:
    """The secret kept in ``path``: FileNotFoundError if there is none,
    ValueError if it is not hex."""
    return bytes.fromhex(path.read_text().strip())


def load_or_create_secret(path: Path) -> bytes:
    """The secret kept in ``path``, made (random, mode 0600) if missing.

    Stored as hex text so that an operator can copy it into the
    ``NETIM_SECRET`` variable of another machine.
    """
    try:
        return read_secret(path)
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(_SECRET_SIZE)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: if two processes race to create it, one wins and the other
    # reads the winner's secret instead of overwriting it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_secret(path)
    with os.fdopen(fd, "w") as out:
        out.write(secret.hex() + "\n")
    return secret
