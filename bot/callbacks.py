"""Callback data for inline buttons: short ':'-separated parts, never over Telegram's 64 bytes."""

from __future__ import annotations

MAX_CALLBACK_BYTES = 64


class CallbackDataError(ValueError):
    pass


def pack(*parts: str | int) -> str:
    data = ":".join(str(p) for p in parts)
    size = len(data.encode("utf-8"))
    if not 1 <= size <= MAX_CALLBACK_BYTES or any(":" in str(p) for p in parts[1:-1]):
        raise CallbackDataError(f"callback data must be 1-64 bytes, got {size}")
    return data


def unpack(data: str | None, prefix: str, count: int) -> list[str] | None:
    """`count` parts after `prefix`, or None when the data is not ours or is malformed."""
    if not data:
        return None
    parts = data.split(":", count)
    if len(parts) != count + 1 or parts[0] != prefix or not all(parts[1:]):
        return None
    return parts[1:]
