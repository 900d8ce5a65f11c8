"""The thin core every command shares: options, exits, NDJSON, redaction, brokers.

Nothing here imports celery, kombu or redis at module level, so that
``--help`` and ``--version`` stay fast.
"""
