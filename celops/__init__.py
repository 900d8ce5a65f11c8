"""celops: small Unix-style commands for running Celery clusters, speaking NDJSON."""

__version__ = "0.1.0"
