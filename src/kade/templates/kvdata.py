"""How a user KV value is kept in the store, and the snapshot templates render from.

Consul keeps a 64-bit `Flags` number beside every value; the store holds plain bytes, so
the two travel together in one encoding (the first byte says which form follows):

    0x00 <value>                      flags = 0 (almost every key)
    0x01 <flags: 8 bytes big-endian>  <value>

Anything else (a value written around the API) reads as a plain value with flags 0.
"""

from __future__ import annotations

from kade.model import KV
from kade.store.base import Entry
from kade.store.mirror import Source

MAX_FLAGS = 2**64 - 1
MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 512 * 1024  # Consul's kv_max_value_size
MAX_TXN_OPS = 64  # Consul's limit of operations in one transaction
_PLAIN = b"\x00"
_FLAGGED = b"\x01"


def encode_kv_value(value: bytes, flags: int = 0) -> bytes:
    if not 0 <= flags <= MAX_FLAGS:
        raise ValueError(f"flags must be between 0 and {MAX_FLAGS}")
    if flags == 0:
        return _PLAIN + value
    return _FLAGGED + flags.to_bytes(8, "big") + value


def decode_kv_value(raw: bytes) -> tuple[bytes, int]:
    """The value and its flags."""
    if raw[:1] == _PLAIN:
        return raw[1:], 0
    if raw[:1] == _FLAGGED and len(raw) >= 9:
        return raw[9:], int.from_bytes(raw[1:9], "big")
    return raw, 0


def user_key(store_key: str) -> str:
    return store_key[len(KV):] if store_key.startswith(KV) else store_key


def _value(entry: Entry) -> bytes:
    return decode_kv_value(entry.value)[0]


# The `kv` input of `render` as a store mirror keeps it: user key → value.
KV_VALUES: Source[bytes] = Source(KV, _value)
