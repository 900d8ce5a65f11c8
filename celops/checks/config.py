"""Configuration checks on what the workers' conf shows (as cctl conf does)."""

import re

from celops.checks import check, finding
from celops.checks.tasks import long_runners

# celery's default worker_prefetch_multiplier (conf shows only settings that differ from the defaults)
DEFAULT_PREFETCH_MULTIPLIER = 4
# the password of scheme://user:password@host (celery shows a masked one as ********)
_URL_PASSWORD = re.compile(r"://[^:/@\s]*:([^@/\s]*)@")


def confs(facts):
    """{worker: its conf reply} (first reply under each name)."""
    return {host: replies[0] for host, replies in sorted(facts.need("replies")["conf"].items())
            if isinstance(replies[0], dict)}


@check("config.prefetch", "workers running long tasks do not prefetch several tasks per process",
       severity="warn for a worker with worker_prefetch_multiplier above 1 while tasks run longer than "
                "--max-runtime", option="--max-runtime",
       source="celery docs: Optimizing, Prefetch Limits",
       hint="set worker_prefetch_multiplier = 1 (and -O fair) for workers of long tasks")
def prefetch(facts, args):
    if not long_runners(facts, args):
        return
    for host, conf in confs(facts).items():
        multiplier = conf.get("worker_prefetch_multiplier", DEFAULT_PREFETCH_MULTIPLIER)
        if isinstance(multiplier, int) and multiplier > 1:
            yield finding("warn", host, f"worker_prefetch_multiplier is {multiplier} while tasks run longer than "
                                        f"{args.max_runtime:g}s: prefetched tasks wait behind them", multiplier, 1)


@check("config.acks_late", "task_acks_late comes with task_reject_on_worker_lost",
       severity="warn for a worker with acks_late and without reject_on_worker_lost",
       source="celery docs: Configuration, task_acks_late and task_reject_on_worker_lost",
       hint="set task_reject_on_worker_lost = True, or a task killed with its process (OOM) is acknowledged: lost")
def acks_late(facts, args):
    for host, conf in confs(facts).items():
        if conf.get("task_acks_late") is True and not conf.get("task_reject_on_worker_lost"):
            yield finding("warn", host, "task_acks_late without task_reject_on_worker_lost")


@check("config.result_expires", "a Redis result backend expires its results",
       severity="warn for a worker with a Redis result_backend and result_expires disabled",
       source="celery docs: Configuration, result_expires",
       hint="set result_expires (default one day); cres --forget removes stored results")
def result_expires(facts, args):
    for host, conf in confs(facts).items():
        backend = conf.get("result_backend")
        if isinstance(backend, str) and backend.startswith("redis") and "result_expires" in conf \
                and not conf["result_expires"]:
            yield finding("warn", host, "results in Redis never expire: the keys pile up without bound")


@check("config.credentials", "the workers' conf shows no password (celery masks broker_url, result_backend and "
                             "secret-sounding names itself, not other URLs)",
       severity="info for a worker whose conf holds a URL with an unmasked password",
       source="celery docs: Configuration; celery.app.utils.filter_hidden_settings (inspect conf)",
       hint="anyone who can send cctl conf reads it (celops redacts it, celery inspect conf does not): put the "
            "password in a setting whose name says PASS, SECRET, TOKEN or KEY, or limit who reaches the broker")
def credentials(facts, args):
    for host, conf in confs(facts).items():
        exposed = sorted(key for key, value in conf.items() if isinstance(value, str) and any(
            password.strip("*") for password in _URL_PASSWORD.findall(value)))
        if exposed:
            yield finding("info", host, f"conf shows a password in {', '.join(exposed)} (redacted here)")
