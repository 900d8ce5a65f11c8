"""The checks of ccheck, each registered once with everything its man page and its findings say of it.

One module per area (broker, workers, queues, tasks, config) registers its
checks with ``@check``: the id, what it looks for, its severity rule, the
option holding its threshold, the Celery document or known failure it comes
from, and the hint (what to do, naming the celops command that does it).
A check is a function ``(facts, args)`` yielding ``finding(...)``s; one that
yields none is ok. Facts come from ``celops.checks.facts``, the only module
that talks to the broker.
"""

import importlib
from collections import namedtuple

from celops.checks.facts import Missing

AREAS = ("broker", "workers", "queues", "tasks", "config")
# How bad each is: the worst finding sets the exit status and a check's gauge.
RANK = {"ok": 0, "info": 1, "unknown": 2, "warn": 3, "crit": 4}
# The value of celops_check_severity (--format prom) for a check's worst finding.
GAUGE = {"ok": 0, "info": 1, "warn": 2, "crit": 3, "unknown": -1}
UNKNOWN_PREFIX = "could not run: "

Check = namedtuple("Check", "id summary severity option source hint kind function")
CHECKS = {}


def check(id, summary, *, severity, source, hint, option=None, kind=None):
    """Register the decorated function as check ``id`` (``kind``: "redis" when it only applies to that broker)."""

    def register(function):
        if id in CHECKS:
            raise ValueError(f"check {id} registered twice")
        CHECKS[id] = Check(id, summary, severity, option, source, hint, kind, function)
        return function

    return register


def finding(severity, subject, message, value=None, threshold=None, hint=None):
    """One finding of the running check; ``hint`` replaces the check's own when the subject needs its own words."""
    return {"severity": severity, "subject": subject, "message": message, "value": value,
            "threshold": threshold, "hint": hint}


def all_checks():
    """Every check, area by area, in the order they were registered."""
    for area in AREAS:
        importlib.import_module(f"celops.checks.{area}")
    return CHECKS


def judge(selected, facts, args, debug=False):
    """The finding records of ``selected`` checks: an ok one for a check without findings, and an
    "unknown" one for a check that could not run (a missing fact; an error in the check itself)."""
    records = []
    for spec in selected:
        if spec.kind and spec.kind != facts.kind:
            found = [finding("ok", "-", f"applies to {spec.kind} brokers only")]
        else:
            try:
                found = list(spec.function(facts, args))
            except Missing as missing:
                found = [finding("unknown", "-", f"{UNKNOWN_PREFIX}{missing}")]
            except Exception as exc:  # a bug in one check must not hide the others' findings
                if debug:
                    raise
                found = [finding("unknown", "-", f"internal error: {type(exc).__name__}: {exc}")]
            found = found or [finding("ok", "-", "no problem found")]
        for item in found:
            hint = item.pop("hint") or (spec.hint if item["severity"] not in ("ok", "unknown") else None)
            records.append({"type": "finding", "check": spec.id, **item, "hint": hint})
    return records


def fold_unknowns(records):
    """The records as printed without -v: the unknown findings of one area that share one reason (an
    unreachable broker, a gatherer that did not answer) become one finding for the area, so that the reason
    is read once; the exit status and --format prom still count each check."""

    def area_and_reason(record):
        return record["check"].split(".")[0], record["message"]

    groups = {}
    for record in records:
        if record["severity"] == "unknown":
            groups.setdefault(area_and_reason(record), []).append(record)
    folded = []
    for record in records:
        group = groups[area_and_reason(record)] if record["severity"] == "unknown" else [record]
        if len(group) == 1:
            folded.append(record)
        elif record is group[0]:
            area, reason = area_and_reason(record)
            folded.append({**record, "check": area, "subject": area, "value": len(group),
                           "message": f"{len(group)} {area} checks could not run (-v names each): "
                                      f"{reason.removeprefix(UNKNOWN_PREFIX)}"})
    return folded


def worst(records):
    """The worst severity among finding records ("ok" when there are none)."""
    return max((record["severity"] for record in records), key=RANK.__getitem__, default="ok")
