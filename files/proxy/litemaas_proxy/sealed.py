"""Model parameters at rest: string values of ``litellm_params`` are sealed in the database.

The format is LiteLLM's, so a database can move between this proxy and LiteLLM in either direction: each
string value is ``base64(nonce + XSalsa20-Poly1305 box)`` under the SHA-256 of ``LITELLM_SALT_KEY`` (or, when
that is unset, of the master key). Values that do not open with the key (rows written before sealing, or
by a proxy without a key) are used as they are. Without any key nothing is sealed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Optional

import nacl.exceptions
import nacl.secret


class ParamSealer:
    def __init__(self, secret: Optional[str]):
        self.box = nacl.secret.SecretBox(hashlib.sha256(secret.encode()).digest()) if secret else None

    def seal_value(self, value: str) -> str:
        return base64.b64encode(self.box.encrypt(value.encode())).decode()

    def open_value(self, value: str) -> Optional[str]:
        """The plain value, or None when ``value`` is not sealed with this key."""
        if self.box is None or not self.looks_sealed(value):
            return None
        try:
            return self.box.decrypt(base64.b64decode(value, validate=True)).decode()
        except (nacl.exceptions.CryptoError, UnicodeDecodeError):
            return None

    @staticmethod
    def looks_sealed(value: str) -> bool:
        """Whether ``value`` has the shape of a sealed value (under any key): base64 of at least nonce (24 bytes)
        + MAC (16 bytes), that is 56 characters or more."""
        if len(value) < 56 or len(value) % 4:
            return False
        try:
            return len(base64.b64decode(value, validate=True)) >= 40
        except (binascii.Error, ValueError):
            return False

    def plain_values(self, params: dict) -> list:
        """Names of the string values of ``params`` stored in plain text (neither sealed with this key nor shaped like
        a value sealed with another one, which is left alone rather than wrapped twice)."""
        if self.box is None:
            return []
        return [k for k, v in (params or {}).items() if isinstance(v, str) and not self.looks_sealed(v)]

    def seal(self, params: dict, only=None) -> dict:
        """A copy of ``params`` with every string value (or only those named in ``only``) sealed; values already
        sealed with this key are kept."""
        if self.box is None:
            return dict(params)
        return {k: self.seal_value(v) if isinstance(v, str) and (only is None or k in only) and self.open_value(v) is None else v
                for k, v in params.items()}

    def open(self, params: dict) -> dict:
        """A copy of ``params`` with every sealed string value opened; other values as they are."""
        out = {}
        for k, v in (params or {}).items():
            plain = self.open_value(v) if isinstance(v, str) else None
            out[k] = v if plain is None else plain
        return out
