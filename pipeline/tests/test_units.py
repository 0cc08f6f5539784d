"""Plain unit tests (no Ray): failure classes, scheduling order, summary carry-over."""

from __future__ import annotations

import json
import os
import signal

import pytest

from mcs_pipeline.scene_task import RETRYABLE, classify
from mcs_pipeline.schedule import expected_costs, longest_first
from mcs_pipeline.summary import RunSummary


# -- scene_task.classify ------------------------------------------------------------------------
def cls(exit_code=0, timed_out=False, log="", has_history=True, history_required=True):
    return classify(exit_code, timed_out, log, has_history, history_required)


def test_classify_success():
    assert cls() is None
    assert cls(has_history=False, history_required=False) is None


def test_classify_timeout_wins_over_everything():
    assert cls(exit_code=None, timed_out=True, log="MemoryError: out of memory") == "timeout"
    assert cls(exit_code=0, timed_out=True) == "timeout"


def test_classify_missing_outputs():
    assert cls(exit_code=0, has_history=False) == "missing_outputs"


@pytest.mark.parametrize("log", [
    "(EE) Server terminated with error (1). X server failed to start",
    "Xlib: cannot open display :0",
    "error: Unable to open display",
])
def test_classify_xserver(log):
    assert cls(exit_code=1, log=f"starting\n{log}\n") == "xserver"


@pytest.mark.parametrize("exit_code, log", [
    (137, ""),
    (-signal.SIGKILL, ""),
    (1, "Traceback ...\nMemoryError"),
    (134, "terminate called after throwing an instance of 'std::bad_alloc'"),
    (1, "OSError: [Errno 12] Cannot allocate memory"),
])
def test_classify_oom(exit_code, log):
    assert cls(exit_code=exit_code, log=log) == "oom"


@pytest.mark.parametrize("exit_code", [1, 2, 3, 255, -signal.SIGTERM])
def test_classify_script_error(exit_code):
    assert cls(exit_code=exit_code, log="[demo] ERROR: something broke") == "script_error"


def test_retryable_classes():
    assert {"timeout", "xserver"} <= RETRYABLE
    assert not {"oom", "script_error", "missing_outputs"} & RETRYABLE


# -- schedule -----------------------------------------------------------------------------------
SCENES = [{"name": "a", "expected_cost": 50}, {"name": "b", "expected_cost": 400},
          {"name": "c", "expected_cost": 200}]


def test_expected_costs_without_previous_are_last_steps():
    assert expected_costs(SCENES, None) == {"a": 50.0, "b": 400.0, "c": 200.0}
    assert longest_first(["a", "b", "c"], expected_costs(SCENES, None)) == ["b", "c", "a"]


def test_expected_costs_prefer_previous_durations_and_scale_the_rest():
    previous = {"scenes": [
        {"name": "a", "duration_s": 30.0},   # 0.6 s/step
        {"name": "b", "duration_s": 80.0},   # 0.2 s/step  -> median of (0.6, 0.2) = 0.4
        {"name": "gone", "duration_s": 1000.0},  # not in this plan: ignored
    ]}
    costs = expected_costs(SCENES, previous)
    assert costs == {"a": 30.0, "b": 80.0, "c": pytest.approx(200 * 0.4)}
    assert longest_first(list(costs), costs) == ["b", "c", "a"]


def test_expected_costs_ignore_missing_or_zero_durations():
    previous = {"scenes": [{"name": "a", "duration_s": None}, {"name": "b", "duration_s": 0},
                           {"name": "c", "duration_s": 10.0}]}
    costs = expected_costs(SCENES, previous)
    # Only c has a duration: 0.05 s/step scales the others.
    assert costs == {"a": pytest.approx(2.5), "b": pytest.approx(20.0), "c": 10.0}


def test_previous_durations_can_reverse_the_order():
    previous = {"scenes": [{"name": "a", "duration_s": 30.0}, {"name": "b", "duration_s": 10.0},
                           {"name": "c", "duration_s": 20.0}]}
    assert longest_first(["a", "b", "c"], expected_costs(SCENES, previous)) == ["a", "c", "b"]


def test_longest_first_breaks_ties_by_name():
    assert longest_first(["z", "m", "a"], {"z": 1.0, "m": 1.0, "a": 1.0}) == ["a", "m", "z"]


# -- summary.RunSummary -------------------------------------------------------------------------
def plan_doc(*names):
    return {"run_id": "r2", "module": "demo", "metadata": "level2", "cluster_name": None,
            "store": "/tmp/store", "summary_key": "f/s.json",
            "scenes": [{"name": n, "expected_cost": 10} for n in names]}


def result(attempt=1, failure=None, exit_code=0, duration=1.5):
    return {"attempt": attempt, "exit_code": exit_code, "failure_class": failure,
            "duration_s": duration, "node": "10.0.0.1", "started_at": "2026-01-01T00:00:00.000Z",
            "outputs": {"history": f"f/h{attempt}.json", "log": f"f/l{attempt}.txt",
                        "videos": []},
            "log_excerpt": "boom" if failure else None}


def test_summary_records_attempts_and_totals():
    s = RunSummary(plan_doc("a", "b", "c"))
    assert s.pending() == ["a", "b", "c"]
    s.record("a", result(1, "xserver", 1), final=False)
    assert s.scenes["a"]["status"] == "PENDING" and s.scenes["a"]["attempts"] == 1
    s.record("a", result(2), final=True)
    s.record("b", result(1, "oom", 137), final=True)
    a, b = s.scenes["a"], s.scenes["b"]
    assert (a["status"], a["attempts"], a["outputs"]["log"]) == ("SUCCESS", 2, "f/l2.txt")
    assert [h["failure_class"] for h in a["history"]] == ["xserver", None]
    assert (b["status"], b["failure_class"], b["exit_code"], b["log_excerpt"]) == \
        ("FAILED", "oom", 137, "boom")
    assert s.totals() == {"total": 3, "succeeded": 1, "failed": 1, "pending": 1, "retried": 1}
    s.finish("finished")
    doc = json.loads(s.to_bytes())
    assert doc["state"] == "finished" and doc["finished_at"] and doc["schema_version"] == 1
    assert doc["totals"]["pending"] == 1 and [x["name"] for x in doc["scenes"]] == ["a", "b", "c"]


def test_summary_carries_over_success_only():
    first = RunSummary(plan_doc("a", "b", "gone"))
    first.record("a", result(1), final=True)
    first.record("b", result(1, "script_error", 3), final=True)
    first.record("gone", result(1), final=True)
    previous = json.loads(first.to_bytes())

    second = RunSummary(plan_doc("a", "b", "new"), previous)
    a, b, new = (second.scenes[n] for n in ("a", "b", "new"))
    assert a["status"] == "SUCCESS" and a["resumed"] is True
    assert a["attempts"] == 1 and a["history"] == previous["scenes"][0]["history"]
    assert a["outputs"] == previous["scenes"][0]["outputs"]
    assert b["status"] == "PENDING" and b["attempts"] == 0 and b["history"] == []
    assert b["resumed"] is False and b["failure_class"] is None
    assert new["status"] == "PENDING"
    assert "gone" not in second.scenes  # not in this plan: dropped
    assert second.pending() == ["b", "new"]
    assert second.doc["run_id"] == "r2" and second.doc["state"] == "running"

    # A deep copy: the new run's records do not touch the previous document.
    second.scenes["a"]["history"].append({"attempt": 99})
    assert len(previous["scenes"][0]["history"]) == 1


def test_scene_task_ships_by_value_to_nodes_without_the_package(tmp_path):
    """Worker nodes cannot import mcs_pipeline: the task must unpickle without it."""
    import subprocess
    import sys

    import mcs_pipeline
    import ray.cloudpickle as cloudpickle
    from mcs_pipeline.scene_task import run_scene

    cloudpickle.register_pickle_by_value(mcs_pipeline)
    # As the driver does: its own S3 client must not ride along (it cannot be pickled).
    from mcs_pipeline.store import make_store
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    make_store("s3://bucket/prefix")
    blob = tmp_path / "task.pkl"
    blob.write_bytes(cloudpickle.dumps(run_scene))
    code = ("import pickle, sys; sys.path = [p for p in sys.path if 'pipeline' not in p]; "
            f"f = pickle.loads(open({str(blob)!r}, 'rb').read()); print(f.__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "run_scene"
