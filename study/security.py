"""Access codes, opaque tokens and image-slot tokens.

Access codes look like ``K7QF-3MZP-WX9R-T2HD`` (16 characters from an alphabet without look-alikes, 80 bits).
The first group is a public *selector* that finds the reader's row; the other 12 characters (60 bits) are the
secret, stored only as a salted ``hashlib.scrypt`` hash and checked with ``secrets.compare_digest``. The
plain code is returned once, when the reader is added (or the code reset), and never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

#: Code alphabet: upper-case letters and digits without I, L, O, U, 0 and 1.
ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
SELECTOR_LEN = 4
SECRET_LEN = 12
#: scrypt cost (N, r, p): about 16 MiB and tens of milliseconds per check on these machines.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_SALT_BYTES = 16
_DKLEN = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_access_code() -> tuple[str, str, str]:
    """A fresh code as ``(display_code, selector, secret)``."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(SELECTOR_LEN + SECRET_LEN))
    selector, secret = chars[:SELECTOR_LEN], chars[SELECTOR_LEN:]
    display = "-".join(chars[i : i + 4] for i in range(0, len(chars), 4))
    return display, selector, secret


def split_code(code: str) -> tuple[str, str] | None:
    """``(selector, secret)`` of a typed code (case, spaces and dashes ignored), or None if malformed."""
    norm = "".join(ch for ch in str(code).upper() if ch.isalnum())
    if len(norm) != SELECTOR_LEN + SECRET_LEN or any(ch not in ALPHABET for ch in norm):
        return None
    return norm[:SELECTOR_LEN], norm[SELECTOR_LEN:]


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=_DKLEN)


def hash_secret(secret: str) -> str:
    """``scrypt$N$r$p$salt$hash`` for a code's secret part, with a fresh random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches a :func:`hash_secret` string (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = _scrypt(secret, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return secrets.compare_digest(actual, expected)


def burn_time(secret: str) -> None:
    """Spend the same time as a real check, so unknown selectors cannot be told apart by timing."""
    _scrypt(secret, b"\0" * _SALT_BYTES, SCRYPT_N, SCRYPT_R, SCRYPT_P)


def new_token() -> str:
    """An opaque random token (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def new_key() -> str:
    """A random 256-bit key, hex."""
    return secrets.token_hex(32)


def slot_token(key: str, query_token: str, slot: int) -> str:
    """The opaque token of display slot ``slot`` of a query: HMAC of the query token, never the method."""
    mac = hmac.new(bytes.fromhex(key), f"{query_token}:{slot}".encode("ascii"), hashlib.sha256).digest()
    return _b64(mac[:16])
