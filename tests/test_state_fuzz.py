"""Property-based: no event, however wrong its fields, gets into State or trips a snapshot or a sink.

Bounded: a few hundred examples of at most a few dozen events each.
"""

import io
import json
import math
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from celops.core.ndjson import Writer
from celops.core.sinks import NdjsonSink, PromSink, SqliteSink
from celops.core.state import FIELD_CHECKS, State, event_problem

T0 = 1_700_000_000.0
TYPES = ["task-sent", "task-received", "task-started", "task-succeeded", "task-failed", "task-retried",
         "task-revoked", "task-rejected", "task-custom", "worker-online", "worker-heartbeat", "worker-offline",
         "celops-gap", "error", "who-knows"]

# Anything JSON (and Python) can carry, the edges first: huge ints, nan, inf, wrong containers.
ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2 ** 63 - 2, max_value=2 ** 64),
    st.floats(), st.sampled_from([1e308, -1.0, 0.0, math.nan, math.inf]), st.text(max_size=8),
    st.lists(st.integers(), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
GOOD_VALUES = {
    "uuid": st.sampled_from(["u1", "u2", "u3"]), "hostname": st.sampled_from(["w1@h", "w2@h"]),
    "name": st.sampled_from(["proj.add", "proj.mul"]), "exception": st.just("ValueError('x')"),
    "timestamp": st.floats(T0, T0 + 100), "local_received": st.floats(T0, T0 + 100),
    "runtime": st.floats(0, 10), "freq": st.floats(0.5, 5), "retries": st.integers(0, 3),
    "clock": st.integers(0, 100), "active": st.integers(0, 8), "processed": st.integers(0, 100),
    "pid": st.integers(1, 99999), "loadavg": st.lists(st.floats(0, 4), max_size=3),
    "sw_ident": st.just("py-celery"), "sw_ver": st.just("5.4.0"), "sw_sys": st.just("Linux"),
}
assert set(GOOD_VALUES) == set(FIELD_CHECKS)


@st.composite
def events(draw):
    """An event of a known type (mostly) with plausible fields, now and then one swapped for an odd value."""
    kind = draw(ODD_VALUES) if draw(st.integers(0, 9)) == 0 else draw(st.sampled_from(TYPES))
    event = {"type": kind}
    for field, good in GOOD_VALUES.items():
        odds = draw(st.integers(0, 19))  # 0: odd, 1-5: absent, else good
        if odds == 0:
            event[field] = draw(ODD_VALUES)
        elif odds > 5:
            event[field] = draw(good)
    return event


def fresh_state():
    return State(max_tasks=5, max_workers=2)


@settings(max_examples=300, deadline=None)
@given(st.lists(events(), max_size=30))
def test_a_rejected_event_leaves_no_trace_and_snapshots_stay_strict_json(stream):
    state = fresh_state()
    for event in stream:
        before = state.snapshot(T0 + 50)
        problem = state.event(dict(event))
        assert problem == event_problem(event)
        if problem is not None:
            after = state.snapshot(T0 + 50)
            after["invalid"] -= 1
            assert after == before, problem
    json.dumps(state.snapshot(T0 + 50), allow_nan=False)  # no nan, no inf, nothing unencodable
    for task in state.tasks.values():
        json.dumps(task.as_record(), allow_nan=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), max_size=30))
def test_every_sink_takes_whatever_state_took(stream):
    state = fresh_state()
    for event in stream:
        state.event(event)
    with tempfile.TemporaryDirectory() as directory:
        sinks = [NdjsonSink(Writer(io.BytesIO()), tasks=True), SqliteSink(f"{directory}/cam.db", retain_days=1),
                 PromSink(f"{directory}/celery.prom")]
        for sink in sinks:
            for task in state.tasks.values():
                task.changed = True
            sink.shoot(state, T0 + 50)
            sink.cleanup(T0 + 50)
            sink.close()


def test_the_issues_triggers_are_rejected_with_the_field_named():
    triggers = {
        "timestamp": {"type": "task-started", "uuid": "u1", "hostname": "hnew", "timestamp": "abc"},
        "freq": {"type": "worker-heartbeat", "hostname": "w", "freq": "abc"},
        "name": {"type": "task-received", "uuid": "u1", "name": {}},
        "hostname": {"type": "task-started", "uuid": "u1", "hostname": []},
        "retries": {"type": "task-received", "uuid": "u1", "retries": 18446744073709551615},
    }
    for field, event in triggers.items():
        assert f"{field} must be" in event_problem(event)
    assert "freq must be" in event_problem({"type": "worker-heartbeat", "hostname": "w", "freq": 1e308})
    assert "hostname must be" in event_problem({"type": "worker-heartbeat", "hostname": 5})
