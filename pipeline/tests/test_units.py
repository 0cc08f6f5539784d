"""Plain unit tests (no Ray): failure classes, scheduling order, summary carry-over."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from mcs_pipeline.failures import RETRYABLE, Signals, classify
from mcs_pipeline.mcs_outputs import History, find_history, find_outputs, key_name, mcs_name
from mcs_pipeline.schedule import expected_costs, longest_first
from mcs_pipeline.store import LocalStore, content_type
from mcs_pipeline.summary import Previous, RunSummary, find_previous


# -- failures.classify ---------------------------------------------------------------------------
def history(confidence="0.9"):
    return History(Path("SCENE_HISTORY/s-20261203-101500.json"), "20261203-101500", confidence)


def cls(exit_code=0, timed_out=False, log="", has_history=True, history_required=True,
        confidence="0.9", lingered=False):
    found = history(confidence) if has_history else None
    return classify(Signals(exit_code, timed_out, log, found, history_required, lingered))


def test_classify_success():
    assert cls() is None
    assert cls(has_history=False, history_required=False) is None


def test_a_history_with_a_score_is_a_result_whatever_the_exit_status():
    # Team scripts end with `unset MCS_CONFIG_FILE_PATH`; a performer hung after end_scene is
    # stopped by the pipeline (no exit status, wall clock or grace): MCS's history decides.
    assert cls(exit_code=1) is None
    assert cls(exit_code=None, timed_out=False, lingered=True) is None


def test_timeout_without_a_history():
    assert cls(exit_code=None, timed_out=True, has_history=False,
               log="MemoryError: out of memory") == "timeout"


def test_missing_history_is_retried():
    assert cls(exit_code=0, has_history=False) == "missing_outputs"
    assert "missing_outputs" in RETRYABLE


@pytest.mark.parametrize("log", [
    "Error:  Unable to start X Server!!",
    "(EE) Server terminated with error (1). X server failed to start",
    "Xlib: cannot open display :0",
    "error: Unable to open display",
])
@pytest.mark.parametrize("exit_code", [0, 1])
def test_classify_xserver(log, exit_code):
    assert cls(exit_code=exit_code, has_history=False, log=f"starting\n{log}\n") == "xserver"


def test_a_crash_scored_minus_one_by_mcs_is_a_failure_of_its_own():
    assert cls(exit_code=0, confidence="-1", log="Traceback ...\nValueError: boom") == \
        "performer_crash"
    assert cls(exit_code=0, confidence="-1", log="MemoryError") == "oom"


def test_mcs_inactivity_end():
    assert cls(exit_code=0, confidence="-1", log="WARNING Attempting to end scene due to "
               "inactivity (user not taking any steps)") == "inactivity"
    assert cls(exit_code=None, confidence="-1", lingered=True) == "inactivity"


@pytest.mark.parametrize("exit_code, log", [
    (137, ""),
    (-signal.SIGKILL, ""),
    (1, "Traceback ...\nMemoryError"),
    (134, "terminate called after throwing an instance of 'std::bad_alloc'"),
    (1, "OSError: [Errno 12] Cannot allocate memory"),
])
def test_classify_oom(exit_code, log):
    assert cls(exit_code=exit_code, log=log, has_history=False) == "oom"


@pytest.mark.parametrize("exit_code", [1, 2, 3, 255, -signal.SIGTERM])
def test_classify_script_error(exit_code):
    assert cls(exit_code=exit_code, has_history=False, log="[demo] ERROR: something broke") == \
        "script_error"


def test_retryable_classes():
    assert {"timeout", "xserver", "missing_outputs", "node_services"} <= RETRYABLE
    assert not {"oom", "script_error", "performer_crash", "inactivity"} & RETRYABLE


# -- mcs_outputs: names as MCS 0.7.4 writes them (controller_media.get_basename, HistoryWriter) --
PREFIX = "eval7_level1_mcsteam"


def mcs_files(eval_dir: Path, name: str, stamp: str, kinds=("visual", "depth", "segmentation")):
    """The files MCS leaves for scene `name` started at `stamp` (test_mcs_team.py checks these
    names against the real package)."""
    (eval_dir / "SCENE_HISTORY").mkdir(parents=True, exist_ok=True)
    history = eval_dir / "SCENE_HISTORY" / f"{name.replace('.json', '')}-{stamp}.json"
    history.write_text(json.dumps({"info": {"name": name.replace(".json", "")},
                                   "score": {"classification": "1", "confidence": "0.8"}}))
    (eval_dir / name).mkdir(parents=True, exist_ok=True)
    videos = [eval_dir / name / f"{PREFIX}_{name.replace('json', '')}_{k}_{stamp}.mp4"
              for k in kinds]
    for video in videos:
        video.write_bytes(b"mp4")
    return history, videos


@pytest.mark.parametrize("name", ["gravity_0001_01", "gravity_0001_02.json", "json_scene"])
def test_outputs_found_where_mcs_leaves_them(tmp_path, name):
    since = time.time_ns()
    history, videos = mcs_files(tmp_path, name, "20261203-101500")
    found = find_outputs(tmp_path, name, since)
    assert found.history is not None and found.history.path == history
    assert found.history.timestamp == "20261203-101500"
    assert found.videos == dict(zip(("visual", "depth", "segmentation"), videos))
    assert key_name(name) == name.removesuffix(".json")


def test_only_this_attempts_outputs_count(tmp_path):
    old_history, old_videos = mcs_files(tmp_path, "s", "20261203-100000")
    old = time.time_ns() - 10_000_000_000
    for path in (old_history, *old_videos):
        os.utime(path, ns=(old, old))
    since = time.time_ns()
    assert find_outputs(tmp_path, "s", since).history is None
    assert find_outputs(tmp_path, "s", since).videos == {}
    # A new attempt's set beside the old: only the new, matched by the history's timestamp.
    history, videos = mcs_files(tmp_path, "s", "20261203-100500")
    found = find_outputs(tmp_path, "s", since)
    assert found.history.path == history and sorted(found.videos.values()) == sorted(videos)


def test_videos_follow_the_history_timestamp(tmp_path):
    since = time.time_ns()
    mcs_files(tmp_path, "s", "20261203-100000")
    history, videos = mcs_files(tmp_path, "s", "20261203-100500")
    (tmp_path / "SCENE_HISTORY" / "s-20261203-100000.json").unlink()
    found = find_outputs(tmp_path, "s", since)
    assert found.history.path == history
    assert sorted(found.videos.values()) == sorted(videos)
    assert any("20261203-100000" in note for note in found.notes)


def test_a_half_written_history_is_not_there_yet(tmp_path):
    since = time.time_ns()
    (tmp_path / "SCENE_HISTORY").mkdir()
    (tmp_path / "SCENE_HISTORY" / "s-20261203-100000.json").write_text('{"info": {')
    assert find_history(tmp_path, "s", since) is None


def test_a_scene_prefix_of_another_is_not_confused(tmp_path):
    since = time.time_ns()
    mcs_files(tmp_path, "s_01_b", "20261203-100000")
    assert find_outputs(tmp_path, "s_01", since).history is None


def test_mcs_name_is_the_scene_json_name():
    assert mcs_name('{"name": "x.json", "goal": {}}', "file") == "x.json"
    assert mcs_name('{"goal": {}}', "file") == "file"
    assert mcs_name("not json", "file") == "file"


def test_content_types():
    assert content_type("f/a_visual.mp4") == "video/mp4"
    assert content_type("f/a.json") == "application/json"
    assert content_type("f/a_log.txt").startswith("text/plain")


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
            "store": "/tmp/store", "summary_key": "f/p_r2_run-summary.json",
            "latest_key": "f/p_latest-run.json", "legacy_summary_key": "f/p_run-summary.json",
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


# -- summary.find_previous: the latest-run pointer, the legacy key, never this run -------------
def stored_summary(store, key, run_id, *names):
    doc = RunSummary(dict(plan_doc(*names), run_id=run_id, summary_key=key))
    for name in names:
        doc.record(name, result(), final=True)
    store.put_bytes(key, doc.to_bytes())
    return doc


def put_pointer(store, run_id, key, previous=None):
    store.put_bytes("f/p_latest-run.json", json.dumps(
        {"schema_version": 1, "run_id": run_id, "summary_key": key, "previous": previous}).encode())


def test_find_previous_follows_the_pointer_not_the_legacy_key(tmp_path):
    store = LocalStore(str(tmp_path))
    stored_summary(store, "f/p_run-summary.json", "old", "a")
    stored_summary(store, "f/p_r1_run-summary.json", "r1", "b")
    put_pointer(store, "r1", "f/p_r1_run-summary.json")
    found = find_previous(store, plan_doc("a", "b"))
    assert (found.run_id, found.key, found.legacy) == ("r1", "f/p_r1_run-summary.json", False)
    assert [s["name"] for s in found.summary["scenes"]] == ["b"]
    assert found.describe(store, resume=True) == \
        f"resuming from run r1 ({tmp_path}/f/p_r1_run-summary.json)"


def test_find_previous_falls_back_to_the_legacy_key_without_a_pointer(tmp_path):
    store = LocalStore(str(tmp_path))
    assert find_previous(store, plan_doc("a")) == Previous(None)
    assert Previous(None).describe(store, resume=True) == "no previous run to resume from"
    assert Previous(None).describe(store, resume=False) == "no previous run"
    stored_summary(store, "f/p_run-summary.json", "old", "a")
    found = find_previous(store, plan_doc("a"))
    assert (found.run_id, found.key, found.legacy) == ("old", "f/p_run-summary.json", True)
    assert found.describe(store, resume=False) == \
        f"previous run old ({tmp_path}/f/p_run-summary.json, the legacy shared key)"


def test_find_previous_never_returns_this_runs_own_summary(tmp_path, capsys):
    store = LocalStore(str(tmp_path))
    own = plan_doc("a")  # run r2
    # At the legacy key (no pointer): ignored, and said so.
    stored_summary(store, "f/p_run-summary.json", "r2", "a")
    assert find_previous(store, own) == Previous(None)
    assert "it is this run's own summary" in capsys.readouterr().out
    # The pointer names this run, which followed r1: r1 is the previous run.
    stored_summary(store, "f/p_r1_run-summary.json", "r1", "a")
    stored_summary(store, "f/p_r2_run-summary.json", "r2", "a")
    put_pointer(store, "r2", "f/p_r2_run-summary.json",
                {"run_id": "r1", "summary_key": "f/p_r1_run-summary.json"})
    assert find_previous(store, own).run_id == "r1"
    # ...and when it followed none, there is none (not the legacy key, not its own summary).
    put_pointer(store, "r2", "f/p_r2_run-summary.json")
    assert find_previous(store, own) == Previous(None)
    # A pointer naming another run whose summary turns out to be this run's: ignored too.
    put_pointer(store, "r9", "f/p_r2_run-summary.json")
    assert find_previous(store, own) == Previous(None)


def test_find_previous_ignores_an_unreadable_pointer(tmp_path, capsys):
    store = LocalStore(str(tmp_path))
    stored_summary(store, "f/p_run-summary.json", "old", "a")
    store.put_bytes("f/p_latest-run.json", b"{ not json")
    assert find_previous(store, plan_doc("a")) == Previous(None)
    assert f"ignoring unreadable run pointer {tmp_path}/f/p_latest-run.json" in \
        capsys.readouterr().out


def test_pointer_names_the_run_and_the_one_it_followed():
    s = RunSummary(plan_doc("a"))
    assert json.loads(s.pointer_bytes(Previous(None))) == {
        "schema_version": 1, "run_id": "r2", "module": "demo", "metadata": "level2",
        "summary_key": "f/p_r2_run-summary.json", "started_at": s.doc["started_at"],
        "previous": None}
    previous = Previous({"scenes": []}, "r1", "f/p_r1_run-summary.json")
    assert json.loads(s.pointer_bytes(previous))["previous"] == \
        {"run_id": "r1", "summary_key": "f/p_r1_run-summary.json"}


def test_local_store_temporary_names_never_collide(tmp_path, monkeypatch):
    """Two writers of one key (two runs, or nodes whose process ids coincide) each write their
    own temporary file: even a repeated random name is skipped, never shared."""
    import itertools

    from mcs_pipeline import store as store_module

    names = itertools.chain(["same", "same"], (f"n{i}" for i in itertools.count()))
    monkeypatch.setattr(store_module.secrets, "token_hex", lambda _n: next(names))
    store = LocalStore(str(tmp_path))
    with store._aside("k/file.json") as first, store._aside("k/file.json") as second:
        first.write(b"one")
        second.write(b"two")
        assert sorted(p.name for p in (tmp_path / "k").iterdir()) == \
            [".file.json.n0.tmp", ".file.json.same.tmp"]
    assert (tmp_path / "k/file.json").read_bytes() == b"one"  # the last one finished wins
    source = tmp_path / "src.txt"
    source.write_text("log")
    store.put_file("k/log.txt", str(source))
    assert (tmp_path / "k/log.txt").read_text() == "log"
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["file.json", "log.txt"]


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


# -- nodes.node_records (Ray's own node-table message type) -------------------------------------
def gcs_node(node_id: int, start_ms: int, end_ms: int = 0, head=False, node_type="",
             instance_type="", labels=None):
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    info = GcsNodeInfo(node_id=bytes([node_id]) * 28, node_manager_address=f"10.0.0.{node_id}",
                       start_time_ms=start_ms, end_time_ms=end_ms, is_head_node=head,
                       node_type_name=node_type, instance_type_name=instance_type)
    info.labels.update(labels or {})
    return info


DEMO_TYPES = {
    "ray.head.default": {"instance_type": "m5.large", "head": True, "spot": False,
                         "usd_per_hour": 0.096, "price_source": "list"},
    "ray.worker.default": {"instance_type": "m5.large", "head": False, "spot": False,
                           "usd_per_hour": 0.096, "price_source": "list"},
    "ray.worker.spot": {"instance_type": "p3.2xlarge", "head": False, "spot": True,
                        "usd_per_hour": 0.95, "price_source": "configs/demo_aws.ini [prices]"},
}


def test_node_records_types_prices_and_lifetimes():
    from mcs_pipeline.nodes import node_records

    table = [
        gcs_node(3, 1_700_000_100_000, 1_700_000_160_500, node_type="ray.worker.spot",
                 instance_type="p3.2xlarge"),
        gcs_node(1, 1_700_000_000_000, head=True, node_type="ray.head.default"),
        gcs_node(2, 1_700_000_050_000, labels={"ray.io/node-group": "ray.worker.default"}),
        gcs_node(4, 1_700_000_200_000),  # v1 worker, no type; two worker types: unknown
    ]
    records = node_records(table, DEMO_TYPES)
    assert [r["address"] for r in records] == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    head, labelled, spot, untyped = records
    assert head == {"node_id": "01" * 28, "address": "10.0.0.1", "node_type": "ray.head.default",
                    "instance_type": "m5.large", "head": True, "spot": False,
                    "started_at": "2023-11-14T22:13:20.000Z", "ended_at": None,
                    "usd_per_hour": 0.096, "price_source": "list"}
    assert labelled["node_type"] == "ray.worker.default" and labelled["usd_per_hour"] == 0.096
    assert spot["spot"] is True and spot["usd_per_hour"] == 0.95
    assert spot["started_at"] == "2023-11-14T22:15:00.000Z"
    assert spot["ended_at"] == "2023-11-14T22:16:00.500Z"
    assert untyped["node_type"] is None and untyped["usd_per_hour"] is None
    assert untyped["instance_type"] is None


def test_node_records_imply_the_only_type():
    from mcs_pipeline.nodes import node_records

    local = {"local.cluster.node": {"instance_type": None, "head": True, "spot": False,
                                    "usd_per_hour": 0.5, "price_source": "module"}}
    records = node_records([gcs_node(1, 1, head=True), gcs_node(2, 2)], local)
    assert [r["node_type"] for r in records] == ["local.cluster.node"] * 2
    assert [r["usd_per_hour"] for r in records] == [0.5, 0.5]
    one_worker_type = {k: v for k, v in DEMO_TYPES.items() if k != "ray.worker.spot"}
    records = node_records([gcs_node(1, 1, head=True), gcs_node(2, 2)], one_worker_type)
    assert [r["node_type"] for r in records] == ["ray.head.default", "ray.worker.default"]
    assert [r["node_type"] for r in node_records([gcs_node(1, 1, head=True)], {})] == [None]
