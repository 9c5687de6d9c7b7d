"""Model parameters at rest: string values of ``litellm_params`` are sealed in the database.

The format is LiteLLM's (``encrypt_value_helper`` / ``decrypt_value_helper``), so a database can move between this
proxy and LiteLLM in either direction: each string value is the URL-safe base64 of ``nonce + XSalsa20-Poly1305 box``
under the SHA-256 of ``LITELLM_SALT_KEY`` (or, when that is unset, of the master key). Values this proxy sealed
before it wrote URL-safe base64 (standard alphabet) open too.

A value that has the shape of a sealed value but does not open with the key (sealed under another salt key) is
never used as it is and never sealed again: the model is refused with an error naming it (``SealedValueError``).
Values without that shape (rows written in plain text, or by a proxy without a key) are used as they are, and sealed
at start. Without any key nothing is sealed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import string
from typing import Optional

import nacl.exceptions
import nacl.secret

_TO_STANDARD = str.maketrans("-_", "+/")
_HEX = frozenset(string.hexdigits)


class SealedValueError(ValueError):
    """Sealed values of a model's parameters do not open with this proxy's key."""

    def __init__(self, names: list, model: Optional[str] = None):
        self.names = sorted(names)
        self.model = model
        fields = ", ".join(f"litellm_params.{n}" for n in self.names)
        subject = f"model {model!r}" if model else "model"
        super().__init__(f"{subject}: {fields} is sealed with another key and cannot be opened with this proxy's LITELLM_SALT_KEY "
                         "(or master key when unset); set the salt key the database was written with, or give new values for "
                         f"{fields} with /model/update")


def _decode(value: str) -> Optional[bytes]:
    """The bytes of ``value`` in URL-safe (LiteLLM) or standard base64 with padding, or None when it is neither."""
    if len(value) % 4:
        return None
    try:
        return base64.b64decode(value.translate(_TO_STANDARD), validate=True)
    except (binascii.Error, ValueError):
        return None


class ParamSealer:
    def __init__(self, secret: Optional[str]):
        self.box = nacl.secret.SecretBox(hashlib.sha256(secret.encode()).digest()) if secret else None

    def seal_value(self, value: str) -> str:
        return base64.urlsafe_b64encode(self.box.encrypt(value.encode())).decode()

    def open_value(self, value: str) -> Optional[str]:
        """The plain value, or None when ``value`` is not sealed with this key."""
        if self.box is None or not self.looks_sealed(value):
            return None
        try:
            return self.box.decrypt(_decode(value)).decode()
        except (nacl.exceptions.CryptoError, UnicodeDecodeError):
            return None

    @staticmethod
    def looks_sealed(value: str) -> bool:
        """Whether ``value`` has the shape of a sealed value (under any key): base64 (URL-safe or standard) of at least
        nonce (24 bytes) + MAC (16 bytes), that is 56 characters or more. Hexadecimal text (API keys often are) is
        plain: a sealed value has a non-hexadecimal character but with a negligible chance."""
        if len(value) < 56 or _HEX.issuperset(value):
            return False
        raw = _decode(value)
        return raw is not None and len(raw) >= 40

    def plain_values(self, params: dict) -> list:
        """Names of the string values of ``params`` stored in plain text (neither sealed with this key nor shaped like
        a value sealed with another one, which is left alone rather than wrapped twice)."""
        if self.box is None:
            return []
        return [k for k, v in (params or {}).items() if isinstance(v, str) and not self.looks_sealed(v)]

    def unopenable(self, params: dict) -> list:
        """Names of the values of ``params`` shaped like sealed values that do not open with this key."""
        return [k for k, v in (params or {}).items() if isinstance(v, str) and self.looks_sealed(v) and self.open_value(v) is None]

    def seal(self, params: dict, only=None) -> dict:
        """A copy of ``params`` with every string value (or only those named in ``only``) sealed. Callers pass plain
        values: what they read from the database went through :meth:`open` first."""
        if self.box is None:
            return dict(params)
        return {k: self.seal_value(v) if isinstance(v, str) and (only is None or k in only) else v for k, v in params.items()}

    def open(self, params: dict, model: Optional[str] = None) -> dict:
        """A copy of ``params`` with every sealed string value opened and plain values as they are; SealedValueError
        (naming ``model``) when a value is sealed under another key."""
        out = {}
        bad = []
        for k, v in (params or {}).items():
            plain = self.open_value(v) if isinstance(v, str) else None
            if plain is None and isinstance(v, str) and self.looks_sealed(v):
                bad.append(k)
            out[k] = v if plain is None else plain
        if bad:
            raise SealedValueError(bad, model)
        return out
