"""Task results read straight from a Celery result backend, as result records.

The backend object is celery's own (``celery.app.backends.by_url``), so its
key prefix, serializer and table names are the ones the workers write with.
Stored values are decoded here rather than by celery: celery would rebuild
exceptions by importing their modules (task code) and, on the database
backend, falls back to unpickling. Pickle is unpickled only when asked to.
"""

import datetime
import fnmatch
import os
import re

from celops.core.exits import CelopsError, ConfigError, ExitStatus, MissingDependency, UsageError

BATCH = 1000  # keys per SCAN step and MGET, ids per SQL IN (...)
EXTENDED_FIELDS = ("name", "args", "kwargs", "worker", "retries", "queue")
PICKLE = "application/x-python-serialize"
SAFE_CONTENT = ["json", "msgpack", "yaml"]
DEFAULT_TIMEOUT = 10.0


def add_backend_options(parser):
    """--backend and --unsafe-pickle: what cres and csend --wait read results with."""
    parser.add_argument("--backend", metavar="URL",
                        help="result backend URL (redis://..., db+postgresql://..., db+sqlite:///PATH); "
                             "default: $CELOPS_RESULT_BACKEND, then the -A app's result_backend")
    parser.add_argument("--unsafe-pickle", action="store_true",
                        help="unpickle pickled results (runs code from the backend: only for backends you trust)")


def open_store(backend_url, app_spec, unsafe_pickle, timeout):
    """The ResultStore for ``--backend URL``, $CELOPS_RESULT_BACKEND or the -A app's result_backend."""
    from celops.core.broker import load_app

    if backend_url == "":
        raise UsageError("empty result backend URL (--backend ''): is a shell variable unset?")
    app = load_app(app_spec) if app_spec else _bare_app()
    url = backend_url or os.environ.get("CELOPS_RESULT_BACKEND") or app.conf.result_backend
    if not url or url == "disabled":
        raise UsageError("no result backend: give --backend URL (or $CELOPS_RESULT_BACKEND), or -A an app "
                         "that sets result_backend")
    accept = SAFE_CONTENT + (["pickle"] if unsafe_pickle else [])
    app.conf.update(result_accept_content=accept, accept_content=accept, result_backend=url,
                    redis_socket_connect_timeout=timeout, redis_socket_timeout=timeout,
                    database_engine_options={"connect_args": _connect_args(url, timeout)},
                    database_create_tables_at_setup=False)  # a reader creates nothing
    backend = _backend(app, url)
    from celery.backends.base import BaseKeyValueStoreBackend

    store = DatabaseStore if _is_database(backend) else KeyValueStore \
        if isinstance(backend, BaseKeyValueStoreBackend) else GenericStore
    return store(backend, url, accept)


def _bare_app():
    from celery import Celery

    return Celery("celops", set_as_current=False)


def _connect_args(url, timeout):
    """A connect timeout for the database drivers that take one (SQLite's is a lock wait)."""
    if url.startswith("db+postgresql"):
        return {"connect_timeout": max(1, int(timeout))}
    return {}


def _backend(app, url):
    from celery.app.backends import by_url
    from celery.exceptions import ImproperlyConfigured

    from celops.core.redact import redact_url

    try:
        cls, backend_url = by_url(url, app.loader)
        return cls(app=app, url=backend_url)
    except ImproperlyConfigured as exc:
        text = str(exc)
        if "SQLAlchemy" in text:
            raise MissingDependency("sqlalchemy") from None
        for module in ("redis", "pymongo", "pylibmc", "elasticsearch", "cassandra"):
            if module in text.lower():
                raise MissingDependency(module) from None
        raise ConfigError(f"unusable result backend {redact_url(url)}: {redact_url(text)}") from None
    except (ImportError, ValueError, KeyError) as exc:
        if isinstance(exc, ModuleNotFoundError):
            raise
        raise UsageError(f"not a result backend URL: {redact_url(url)} ({exc})") from None


def _is_database(backend):
    return type(backend).__name__ == "DatabaseBackend"


def unavailable(url, exc):
    """The error for a backend that cannot be reached (exit 69), password redacted."""
    from celops.core.redact import redact_url

    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CelopsError(f"cannot reach result backend {redact_url(url)}: {redact_url(reason)}",
                       ExitStatus.UNAVAILABLE)


class Filter:
    """--state, --name and --since, applied to decoded records (and pushed into SQL where it can be)."""

    def __init__(self, states=None, names=None, since=None):
        self.states = set(states) if states else None
        self.names = list(names) if names else None
        self.since = since  # an aware UTC datetime, or None
        self._name_match = re.compile("|".join(fnmatch.translate(glob) for glob in names)).match if names else None

    def matches(self, record):
        if self.states is not None and record.get("state") not in self.states:
            return False
        if self._name_match is not None and not (isinstance(record.get("name"), str)
                                                 and self._name_match(record["name"])):
            return False
        if self.since is not None:
            done = parse_time(record.get("date_done"))
            if done is None or done < self.since:
                return False
        return True


def parse_time(value):
    """An aware datetime from an ISO 8601 string (UTC when it has no offset), or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


class ResultStore:
    """What every backend offers: records by id, forgetting. Listing where the backend can."""

    def __init__(self, backend, url, accept):
        self.backend = backend
        self.url = url
        self.unsafe_pickle = "pickle" in accept
        from kombu.serialization import prepare_accept_content

        self.accept = prepare_accept_content(accept)  # content types, as kombu's loads wants them
        self.undecoded = 0  # stored results not decoded (pickle without --unsafe-pickle)

    def lookup(self, ids):
        """Result records for ``ids``, in order, in batches."""
        raise NotImplementedError

    def select(self, selection, limit=None):
        """Result records of the stored results that ``selection`` (a Filter) matches, at most ``limit``."""
        raise UsageError(f"the {type(self.backend).__name__} result backend cannot list its results; "
                         f"give task ids instead (listing needs Redis or a database backend)")

    def forget(self, task_ids):
        for task_id in task_ids:
            self.backend.forget(task_id)

    def decode(self, payload, content_type=None):
        """A stored value as data; what is not decoded is a label like cq-peek's: "<pickle, 120 bytes>"."""
        from kombu.exceptions import ContentDisallowed, DecodeError
        from kombu.serialization import loads, registry

        if payload is None:
            return None
        content_type = content_type or self.backend.content_type
        try:
            return loads(payload, content_type, self.backend.content_encoding, accept=self.accept)
        except ContentDisallowed:
            pass
        except (DecodeError, ValueError, TypeError):
            if not (isinstance(payload, bytes) and payload[:1] == b"\x80"):  # not a pickle either
                return f"<undecodable, {len(payload)} bytes>"
            content_type = PICKLE
            if self.unsafe_pickle:
                return loads(payload, PICKLE, "binary", accept=self.accept)
        self.undecoded += 1
        return f"<{registry.type_to_name.get(content_type, content_type)}, {len(payload)} bytes>"


def unknown(task_id):
    """The record of an id the backend does not know: PENDING, as celery reports it."""
    return {"type": "result", "uuid": task_id, "state": "PENDING", "result": None, "traceback": None,
            "date_done": None, "children": [], "known": False}


def from_meta(task_id, meta):
    """A result record from celery's decoded meta dict (extended fields only when stored)."""
    if not isinstance(meta, dict):  # the whole meta was not decoded
        return {"type": "result", "uuid": task_id, "state": None, "result": meta}
    date_done = meta.get("date_done")
    record = {"type": "result", "uuid": task_id, "state": meta.get("status"), "result": meta.get("result"),
              "traceback": meta.get("traceback"),
              "date_done": date_done.isoformat() if isinstance(date_done, datetime.datetime) else date_done,
              "children": meta.get("children") or []}
    for field in EXTENDED_FIELDS:
        if meta.get(field) is not None:
            record[field] = meta[field]
    return record


class KeyValueStore(ResultStore):
    """Redis and the other key-value backends: MGET by id; on Redis, SCAN over the meta keys to list."""

    def _records(self, task_ids, values):
        for task_id, raw in zip(task_ids, values):
            yield unknown(task_id) if raw is None else from_meta(task_id, self.decode(raw))

    def lookup(self, ids):
        key = self.backend.get_key_for_task
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            yield from self._records(chunk, self._call(self.backend.mget, [key(task_id) for task_id in chunk]))

    def _call(self, function, *args):
        try:
            return function(*args)
        except (OSError, *self._connection_errors()) as exc:
            raise unavailable(self.url, exc) from None

    def _connection_errors(self):
        try:
            from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeout
        except ModuleNotFoundError:
            return ()
        return RedisConnectionError, RedisTimeout

    def select(self, selection, limit=None):
        client = getattr(self.backend, "client", None)
        if client is None or not hasattr(client, "scan"):
            return super().select(selection, limit)
        return self._scan(client, selection, limit)

    def _scan(self, client, selection, limit):
        """SCAN MATCH prefix* in steps, MGET each step's keys in one pipeline; never KEYS."""
        prefix = self.backend.task_keyprefix
        prefix = prefix if isinstance(prefix, bytes) else prefix.encode()
        pattern = re.sub(rb"([*?\[\]\\])", rb"\\\1", prefix) + b"*"
        # a JSON meta holds its state verbatim: skip the others without decoding them
        needles = [f'"{state}"'.encode() for state in selection.states] \
            if selection.states and self.backend.content_type == "application/json" else None
        seen = set()
        cursor, emitted = 0, 0
        while True:
            cursor, keys = self._call(client.scan, cursor, pattern, BATCH)
            keys = [key for key in keys if key not in seen]
            seen.update(keys)
            if keys:
                for key, raw in zip(keys, self._call(client.mget, keys)):
                    if raw is None or (needles and not any(needle in raw for needle in needles)):
                        continue
                    record = from_meta(key[len(prefix):].decode("utf-8", "replace"), self.decode(raw))
                    if selection.matches(record):
                        yield record
                        emitted += 1
                        if limit is not None and emitted >= limit:
                            return
            if int(cursor) == 0:
                return


class DatabaseStore(ResultStore):
    """The SQLAlchemy backend: one SQL query per batch of ids, one for a listing, on celery's own table."""

    def __init__(self, backend, url, accept):
        super().__init__(backend, url, accept)
        self._table = None
        self._engine = None

    def _connect(self):
        """The engine and the reflected table (None when no result was ever stored)."""
        import sqlalchemy as sa

        if self._engine is None:
            backend = self.backend
            self._engine = backend.session_manager.get_engine(backend.url, **backend.engine_options)
            model = backend.task_cls.__table__
            try:
                self._table = sa.Table(model.name, sa.MetaData(), schema=model.schema, autoload_with=self._engine)
            except sa.exc.NoSuchTableError:
                self._table = None
            except sa.exc.OperationalError as exc:
                raise unavailable(self.url, exc.orig or exc) from None
        return self._engine, self._table

    def _rows(self, query):
        import sqlalchemy as sa

        engine, _ = self._connect()
        try:
            with engine.connect() as connection:
                yield from connection.execute(query).mappings()
        except sa.exc.OperationalError as exc:
            raise unavailable(self.url, exc.orig or exc) from None

    def _record(self, row):
        meta = {"status": row["status"], "result": self.decode(row["result"]), "traceback": row["traceback"],
                "date_done": _utc(row["date_done"]), "children": self.decode(row["children"])}
        for field in EXTENDED_FIELDS:
            value = row.get(field)
            meta[field] = self.decode(value) if field in ("args", "kwargs") else value
        return from_meta(row["task_id"], meta)

    def lookup(self, ids):
        _, table = self._connect()
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            found = {}
            if table is not None:
                found = {row["task_id"]: self._record(row)
                         for row in self._rows(table.select().where(table.c.task_id.in_(chunk)))}
            for task_id in chunk:
                yield found.get(task_id) or unknown(task_id)

    def _where(self, table, selection):
        """The filter as SQL; name globs become LIKE (the exact glob is applied to the rows too)."""
        clauses = []
        if selection.states:
            clauses.append(table.c.status.in_(sorted(selection.states)))
        if selection.since is not None:
            clauses.append(table.c.date_done >= selection.since.astimezone(datetime.timezone.utc)
                           .replace(tzinfo=None))
        if selection.names:
            if "name" not in table.c:
                return None  # results stored without result_extended have no names: nothing matches
            import sqlalchemy as sa

            clauses.append(sa.or_(*(table.c.name.like(_like(glob), escape="\\") for glob in selection.names)))
        return clauses

    def select(self, selection, limit=None):
        _, table = self._connect()
        clauses = None if table is None else self._where(table, selection)
        if clauses is None:
            return
        emitted = 0
        for row in self._rows(table.select().where(*clauses).order_by(table.c.id)):
            record = self._record(row)
            if selection.matches(record):
                yield record
                emitted += 1
                if limit is not None and emitted >= limit:
                    return

    def forget(self, task_ids):
        import sqlalchemy as sa

        engine, table = self._connect()
        if table is None:
            return
        ids = list(task_ids)
        try:
            with engine.begin() as connection:
                for start in range(0, len(ids), BATCH):
                    connection.execute(table.delete().where(table.c.task_id.in_(ids[start:start + BATCH])))
        except sa.exc.OperationalError as exc:
            raise unavailable(self.url, exc.orig or exc) from None


def _utc(moment):
    """A stored naive date_done is UTC (celery writes UTC); say so in the ISO string."""
    if isinstance(moment, datetime.datetime) and moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def _like(glob):
    """A shell glob as a LIKE pattern with \\ as the escape character (classes [..] match widely)."""
    out = []
    for char in glob:
        out.append({"*": "%", "?": "_", "%": "\\%", "_": "\\_", "\\": "\\\\"}.get(char, char))
    return re.sub(r"\[[^\]]*\]", "_", "".join(out))


class GenericStore(ResultStore):
    """Any other backend: celery's get_task_meta by id; no listing."""

    def lookup(self, ids):
        for task_id in ids:
            try:
                meta = self.backend.get_task_meta(task_id)
            except OSError as exc:
                raise unavailable(self.url, exc) from None
            if meta.get("status") == "PENDING" and meta.get("date_done") is None and meta.get("result") is None:
                yield unknown(task_id)
                continue
            result = meta.get("result")
            if isinstance(result, BaseException):
                meta["result"] = {"exc_type": type(result).__name__, "exc_message": list(result.args),
                                  "exc_module": type(result).__module__}
            yield from_meta(task_id, meta)


READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED", "REJECTED", "IGNORED"})
