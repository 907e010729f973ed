"""CRC-64-AVRO (Rabin) fingerprints of schemas' Parsing Canonical Form, as the Avro spec defines.

Kept here rather than borrowed so the byte order of the single-object header is ours to test.
"""

from __future__ import annotations

_EMPTY = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    """The 64-bit Rabin fingerprint of `data` (the Avro spec's reference algorithm)."""
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def fingerprint_bytes(canonical_form: str) -> bytes:
    """The 8 little-endian bytes written after the single-object marker."""
    return crc64_avro(canonical_form.encode()).to_bytes(8, "little")
