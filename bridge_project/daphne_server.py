"""daphne with the bridge's start-up recovery and graceful shutdown (`make run SERVER=daphne`).

daphne speaks no ASGI lifespan, so realtime.lifecycle's `lifespan` never runs under it. This
launcher does the same two things around daphne's own Server:

- before listening, `startup_recovery` (recordings left by a dead process, stale calls);
- on SIGTERM/SIGINT, before daphne cancels every application instance (its "before shutdown"
  trigger, `kill_all_applications`), `shutdown_bridges` ends the calls in flight and awaits
  their finalization up to SHUTDOWN_DEADLINE_S. Doing it inside that trigger, not in a second
  trigger beside it, matters: Twisted calls all "before" triggers at once, so a separate one
  would race daphne's cancellation of the very consumers whose calls it is finishing.

Run as `python -m bridge_project.daphne_server` with daphne's own arguments
(`--bind 127.0.0.1 --port 8000 bridge_project.asgi:application`).
"""

from __future__ import annotations

# daphne.server installs Twisted's asyncio reactor on import, so it comes before Twisted.
from daphne.cli import CommandLineInterface
from daphne.server import Server

# isort: split
import asyncio
import logging
import sys
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

# Named, not __name__: run with -m, this module is "__main__".
logger = logging.getLogger("bridge_project.daphne_server")


def _startup_recovery() -> None:
    """realtime.lifecycle.startup_recovery, as the ASGI lifespan runs it under uvicorn."""
    from django.db import connections

    from realtime.lifecycle import startup_recovery

    try:
        startup_recovery()
    except Exception:
        # A broken database at start-up must not stop the server from serving calls.
        logger.exception("start-up recovery failed; will retry at the next start")
    finally:
        # This thread serves no request later; don't leave its connection open for ever.
        connections.close_all()


async def _finish_calls() -> None:
    from django.conf import settings

    from realtime.lifecycle import shutdown_bridges

    ended = await shutdown_bridges(deadline_s=settings.SHUTDOWN_DEADLINE_S)
    logger.info("shutdown: %d call(s) in flight ended and finalized", ended)


def _log_shutdown_failure(failure: Failure) -> None:
    logger.error("shutdown: finishing the calls in flight failed: %s", failure.getTraceback())


class BridgeServer(Server):
    """daphne's Server plus realtime.lifecycle's start and end."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ports: list[Any] = []

    def run(self) -> None:
        # The app is imported (Django is set up) and the reactor is not running yet.
        _startup_recovery()
        super().run()

    def listen_success(self, port: Any) -> None:
        self._ports.append(port)
        super().listen_success(port)

    def kill_all_applications(self) -> defer.Deferred[Any]:
        """Stop accepting, finish the calls, and only then let daphne cancel what is left."""
        # Like uvicorn: no new connection lands on a process that is going away.
        for port in self._ports:
            port.stopListening()
        finished = defer.Deferred.fromFuture(asyncio.ensure_future(_finish_calls()))
        finished.addErrback(_log_shutdown_failure)
        finished.addCallback(lambda _: super(BridgeServer, self).kill_all_applications())
        return finished


class BridgeCommandLine(CommandLineInterface):
    server_class = BridgeServer


def main(argv: list[str] | None = None) -> None:
    BridgeCommandLine().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
