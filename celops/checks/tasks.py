"""Task checks, from the events of a short sample and the tasks running now."""

import time

from celops.checks import check, finding

MONITORING = "celery docs: Monitoring and Management Guide (task events)"


def _outcomes(facts, subject):
    """{task name: count} of the sample's task events of ``subject`` ("failed", "succeeded", "retried")."""
    counts = {}
    for (event_subject, name, _), count in facts.need("events")["state"].task_events.items():
        if event_subject == subject:
            counts[name] = counts.get(name, 0) + count
    return counts


@check("tasks.failures", "no task name fails more often than --max-failure-rate in the sample",
       severity="warn above --max-failure-rate (failed / finished)", option="--max-failure-rate, --sample",
       source=MONITORING, hint="cev-dump --type task-failed shows the exceptions; cres lists stored failures")
def failures(facts, args):
    failed, succeeded = _outcomes(facts, "failed"), _outcomes(facts, "succeeded")
    for name, count in sorted(failed.items(), key=lambda item: str(item[0])):
        rate = round(count / (count + succeeded.get(name, 0)), 3)
        if rate > args.max_failure_rate:
            yield finding("warn", name, f"{count} of {count + succeeded.get(name, 0)} finished in the sample "
                                        f"failed", rate, args.max_failure_rate)


@check("tasks.retries", "no task name retries more than --max-retries times in the sample (a retry storm)",
       severity="warn above --max-retries", option="--max-retries, --sample", source=MONITORING,
       hint="look at why it retries (cev-dump --type task-retried); back off with retry_backoff")
def retries(facts, args):
    for name, count in sorted(_outcomes(facts, "retried").items(), key=lambda item: str(item[0])):
        if count > args.max_retries:
            yield finding("warn", name, f"{count} retries in the {args.sample:g}s sample", count, args.max_retries)


def long_runners(facts, args):
    """{task name: longest seconds} of tasks that ran (sample) or run now (active) longer than --max-runtime."""
    longest = {}
    if facts.has("events"):
        for task in facts.values["events"]["state"].tasks.values():
            if task.runtime is not None and task.runtime > args.max_runtime:
                longest[task.name] = max(longest.get(task.name, 0), task.runtime)
    now = time.time()
    for replies in facts.need("replies")["active"].values():
        for item in replies[0] or ():
            started = item.get("time_start") if isinstance(item, dict) else None
            if isinstance(started, (int, float)) and now - started > args.max_runtime:
                longest[item.get("name")] = max(longest.get(item.get("name"), 0), now - started)
    return longest


@check("tasks.runtime", "no task runs, or ran during the sample, longer than --max-runtime",
       severity="warn above --max-runtime", option="--max-runtime",
       source="celery docs: Tasks, time limits (task_time_limit, task_soft_time_limit)",
       hint="cctl active --each shows them, cctl terminate KILL ID stops one; set a time limit")
def runtime(facts, args):
    for name, seconds in sorted(long_runners(facts, args).items(), key=lambda item: str(item[0])):
        yield finding("warn", name, f"ran for {seconds:.1f}s", round(seconds, 1), args.max_runtime)
