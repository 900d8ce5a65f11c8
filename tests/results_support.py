"""Result backends for the cres and csend tests: a Redis db of the private server, an SQLite file, a private
PostgreSQL database; workers that store results in them; results stored directly through celery's backend."""

import os
import subprocess
import uuid

from tests.conftest import run_command
from tests.support import poll

PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1", "-c"]
READY = {"SUCCESS", "FAILURE", "REVOKED"}


class PostgresDatabase:
    """A database of its own on the local PostgreSQL, created and dropped by the test."""

    def __init__(self):
        self.name = f"celops_test_{uuid.uuid4().hex[:10]}"

    def url(self):
        return f"db+postgresql://postgres@127.0.0.1/{self.name}"

    def __enter__(self):
        subprocess.run([*PG_ADMIN, f"CREATE DATABASE {self.name}"], check=True, capture_output=True)
        return self

    def __exit__(self, *exc_info):
        subprocess.run([*PG_ADMIN, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"], capture_output=True)


def backend_app(url, extended=False, serializer="json"):
    """A Celery app writing results to ``url`` the way a worker of tests.app would."""
    from celery import Celery

    app = Celery("celops-test-results", set_as_current=False)
    app.conf.update(result_backend=url, result_extended=extended, result_serializer=serializer,
                    result_accept_content=["json", "pickle"])
    return app


def cres(*argv, stdin=b""):
    from celops.commands import cres as command

    return run_command(command.main, argv, stdin=stdin)


def wait_done(backend_url, ids, timeout=60):
    """Poll cres until every id is in a ready state; returns the records by id."""
    result = poll(lambda: cres("--backend", backend_url, *ids), lambda got: got.status == 0 and all(
        record["state"] in READY for record in got.records), timeout, f"results of {len(ids)} tasks")
    return {record["uuid"]: record for record in result.records}


def sqlite_url(directory):
    return f"db+sqlite:///{os.path.join(directory, 'results.db')}"
