"""What the stand-ins share: whatever they observe wakes whoever waits for it (tests, the
e2e harness, the commands), so waits end on the event rather than on a polling interval."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class Observed:
    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """Wake whoever waits in wait_until: something was observed."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], deadline_s: float = 10.0) -> None:
        """Wait until `predicate()` holds, re-checked whenever something is observed."""
        async with asyncio.timeout(deadline_s):
            while not predicate():
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 0.05)
