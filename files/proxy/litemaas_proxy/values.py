"""One parser each for on/off words and timestamps, used everywhere in the proxy (durations: ``durations.py``).

Standard library only: the key-cleanup tool (``tools/key_cleanup.py``) ships in the same image but runs without
the proxy's dependencies, and imports this module.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

UTC = timezone.utc
ON_WORDS = ("1", "true", "yes", "on")
OFF_WORDS = ("0", "false", "no", "off")


def parse_on_off(value, default: bool = False, setting: Optional[str] = None) -> bool:
    """``1/true/yes/on`` -> True, ``0/false/no/off`` -> False (any case; YAML booleans as they are); None or ``""`` -> ``default``.

    Another word is an error naming ``setting`` when one is given (settings, where a typo must not pass
    silently); without ``setting`` it counts as off (query parameters such as ``return_full_object``, as LiteLLM).
    """
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word == "":
        return default
    if word in ON_WORDS:
        return True
    if word in OFF_WORDS or setting is None:
        return False
    raise ValueError(f"Invalid {setting} {value!r}: expected one of {', '.join(ON_WORDS)} (on) or {', '.join(OFF_WORDS)} (off)")


def parse_timestamp(value) -> Optional[datetime]:
    """An ISO-8601 timestamp (``Z`` or an offset; naive means UTC), a datetime, or epoch seconds, as an aware datetime.

    None and ``""`` give None; anything else that is not a timestamp raises ValueError.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    text = str(value).strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    if "." in text:
        # Python 3.9/3.10 fromisoformat accepts only 0, 3 or 6 fractional digits.
        head, rest = text.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        tail = rest[len(digits):]
        text = f"{head}.{(digits + '000000')[:6]}{tail}"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def epoch(value) -> Optional[float]:
    """:func:`parse_timestamp` as epoch seconds (None stays None). Fast for PostgreSQL's own ISO text (row_to_json)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            pass
    return parse_timestamp(value).timestamp()
