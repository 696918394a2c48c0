"""The thin client's pieces that replace stdlib conveniences to start faster: the frame codec
(CPython's C JSON accelerator used directly, not ``json``) must write and read exactly what
``json`` does."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyter_neo.controller import wire

TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)  # surrogates too
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@given(msg=st.dictionaries(TEXT, VALUES, max_size=6))
def test_frames_are_what_json_writes_and_read_back_as_json_reads(msg: dict[str, object]) -> None:
    frame = wire.encode(msg)
    body = frame[4:]
    assert int.from_bytes(frame[:4], "big") == len(body)
    assert body == json.dumps(msg, separators=(",", ":"), default=str).encode("utf-8", "surrogateescape")
    assert wire._decode(body) == json.loads(body.decode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("bad", [b"", b"{", b'{"a":1} x', b"[1]", b'{"a":tru}'])
def test_a_broken_frame_is_a_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        wire._decode(bad)
