"""Real database outages for tests: another connection holds a lock while the product writes.

SQLite: an exclusive transaction on the database file. PostgreSQL: an exclusive lock on the
tables the call writer uses. With `short_lock_timeout` the writer's statements fail fast
(and are retried) instead of waiting the lock out.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from django.db import connection, connections

from realtime import store as store_module


@contextlib.contextmanager
def short_lock_timeout() -> Iterator[None]:
    """Make the writer fail fast on a held lock instead of waiting it out."""
    options = connections.settings["default"].setdefault("OPTIONS", {})
    saved = dict(options)
    if connection.vendor == "sqlite":
        options["timeout"] = 0.2
    else:
        options["options"] = "-c lock_timeout=200"
    store_module.writer_connections_close()
    try:
        yield
    finally:
        options.clear()
        options.update(saved)
        store_module.writer_connections_close()


@contextlib.contextmanager
def database_locked() -> Iterator[None]:
    if connection.vendor == "sqlite":
        other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
    else:
        import psycopg

        params = connection.get_connection_params()
        with psycopg.connect(
            host=params.get("host"), port=params.get("port"), user=params.get("user"),
            dbname=params["dbname"], autocommit=False,
        ) as other:  # fmt: skip
            other.execute("LOCK TABLE calls_transcript, calls_analytics IN ACCESS EXCLUSIVE MODE")
            yield
            other.rollback()


@contextlib.contextmanager
def postgres_refusing_connections(params: dict, keep_pid: int) -> Iterator[None]:
    """PostgreSQL refuses new connections to the database and drops the existing ones
    except `keep_pid` (the test's own). `ALLOW_CONNECTIONS false` holds for superusers too.

    `params` and `keep_pid` come from the test's connection, read in synchronous code.
    """
    import psycopg

    name = params["dbname"]
    admin = psycopg.connect(
        host=params.get("host"), port=params.get("port"), user=params.get("user"),
        dbname="postgres", autocommit=True,
    )  # fmt: skip
    try:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> %s AND pid <> pg_backend_pid()",
            (name, keep_pid),
        )
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
