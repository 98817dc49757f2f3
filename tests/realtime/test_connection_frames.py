"""The model socket's hand-built client frames: what websockets' own parser reads back."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from realtime.connection import MaskKeys, client_text_frame


def parse_as_server(data: bytes) -> Frame:
    """Parse one frame the way a server does (it requires the client's mask)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=True, max_size=None, extensions=[])
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("the frame was incomplete")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_a_hand_built_frame_is_a_whole_masked_text_frame(size):
    payload = bytes(i % 251 for i in range(size))
    data = client_text_frame(payload)
    frame = parse_as_server(data)
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)
    header = {True: 2, False: 4 if size < 65536 else 10}[size < 126]
    assert len(data) == header + 4 + size  # the 4-byte mask key follows the length
    if size:
        assert data[header + 4 :] != payload  # masked on the wire


def test_mask_keys_are_unpredictable_and_never_run_out():
    keys = MaskKeys()
    taken = [keys.take() for _ in range(3 * MaskKeys.POOL_BYTES // 4 + 7)]  # refills the pool
    assert all(len(key) == 4 for key in taken)
    # 4 random bytes each: among ~3,000, a repeat is rare (p ~ 0.1 %), many are impossible.
    assert len(set(taken)) >= len(taken) - 2
    assert len({client_text_frame(b"same")[2:6] for _ in range(100)}) >= 98
