"""The run summary on the store: cheap to keep at 10,000 scenes, never far behind, complete at
the end, and readable (with its journal) by a resume after a driver that was killed.

The first tests drive SummaryWriter with a clock of their own (no Ray); the others run the real
driver on the session's Ray.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import DRIVER_TIMEOUT_S, REPO
from mcs_pipeline.store import LocalStore
from mcs_pipeline.summary import (SUMMARY_INTERVAL_S, RunSummary, SummaryWriter, count_totals,
                                  find_previous, read_summary)

KEY = "demo-eval/demo-eval_level2_demo_r1_run-summary.json"


class MemoryStore:
    """A results store in memory that keeps a log of what was written."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.puts: list[tuple[str, int]] = []

    def uri(self, key: str) -> str:
        return f"mem://{key}"

    def put_bytes(self, key: str, data: bytes) -> None:
        self.objects[key] = bytes(data)
        self.puts.append((key, len(data)))

    def get_bytes(self, key: str) -> bytes | None:
        return self.objects.get(key)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plan_doc(names, run_id="r1", key=KEY):
    return {"run_id": run_id, "module": "demo", "metadata": "level2", "cluster_name": "mcs-x",
            "store": "s3://bucket", "summary_key": key,
            "latest_key": "demo-eval/demo-eval_level2_demo_latest-run.json",
            "legacy_summary_key": "demo-eval/demo-eval_level2_demo_run-summary.json",
            "scenes": [{"name": n, "expected_cost": 100 + i % 50} for i, n in enumerate(names)]}


def result(name, attempt=1, failure=None, excerpt_bytes=0):
    """A result the size real ones have: output keys, a node address, sometimes a log excerpt."""
    prefix = f"demo-eval/demo-eval_level2_demo_{name}"
    return {"attempt": attempt, "exit_code": 1 if failure else 0, "failure_class": failure,
            "duration_s": 612.345, "node": "172.31.44.207",
            "started_at": "2026-11-26T03:32:13.123Z",
            "outputs": {"history": None if failure else f"{prefix}.json",
                        "log": f"{prefix}_20261126-033213-123_log.txt",
                        "videos": [f"demo-eval-movies/demo-eval_level2_demo_{name}_{kind}.mp4"
                                   for kind in ("visual", "topdown", "depth")]},
            "log_excerpt": ("x" * 79 + "\n") * (excerpt_bytes // 80) if failure else None}


def scenes_of(doc: dict) -> list:
    return json.loads(json.dumps(doc["scenes"]))


def test_realistic_run_costs_under_10_kb_per_scene_and_is_never_behind():
    """10,000 scenes finishing at ~0.5/s for 5.5 hours (a fleet of scenes of minutes): every
    change on the store within the interval, ~6 KB written per scene, the whole file rewritten
    only a handful of times, and the store (file + journal) always equal to the driver's."""
    rng = random.Random(9)
    names = [f"scene_{i:05d}" for i in range(10_000)]
    store, clock = MemoryStore(), Clock()
    summary = RunSummary(plan_doc(names))
    writer = SummaryWriter(store, summary, clock=clock)
    writer.save()
    unwritten_since = None  # the oldest change the store does not have yet
    lags = []

    def wrote_since(count: int) -> None:
        nonlocal unwritten_since
        if len(store.puts) > count and unwritten_since is not None:
            lags.append(clock.now - unwritten_since)
            unwritten_since = None

    def advance(to: float) -> None:
        """The driver's loop: it wakes when a write is due, before the next scene finishes."""
        while (due := writer.due_in()) is not None and clock.now + due <= to:
            clock.now += due
            before = len(store.puts)
            writer.flush_if_due()
            wrote_since(before)
        clock.now = to

    checkpoints = {2_500, 5_000, 9_000}
    t = 0.0
    for i, name in enumerate(names):
        t += rng.expovariate(1 / 2.0)  # ~0.5 scenes per second
        advance(t)
        if rng.random() < 0.03:  # an X-server failure first, then the retry succeeded
            writer.record(name, result(name, 1, "xserver", 2000), final=False)
            unwritten_since = clock.now if unwritten_since is None else unwritten_since
            t += 1.0
            advance(t)
            writer.record(name, result(name, 2), final=True)
        elif rng.random() < 0.05:  # failed for good, with the end of its log
            writer.record(name, result(name, 1, "script_error", 4000), final=True)
        else:
            writer.record(name, result(name), final=True)
        unwritten_since = clock.now if unwritten_since is None else unwritten_since
        before = len(store.puts)
        writer.flush_if_due()
        wrote_since(before)
        if i + 1 in checkpoints:  # the store as a reader sees it, once the change is out
            t = clock.now + SUMMARY_INTERVAL_S
            advance(t)
            stored = read_summary(store, KEY)
            assert stored["state"] == "running"
            assert scenes_of(stored) == json.loads(json.dumps(list(summary.scenes.values())))
            assert stored["totals"] == summary.totals()
            assert stored["totals"]["pending"] == len(names) - i - 1
    summary.finish("finished")
    writer.save()

    hours = clock.now / 3600
    assert 5 < hours < 6.5
    assert max(lags) <= SUMMARY_INTERVAL_S
    written = sum(size for _key, size in store.puts)
    file_writes = [size for key, size in store.puts if key == KEY]
    chunks = [key for key, _size in store.puts if ".journal/" in key]
    per_scene = written / len(names)
    print(f"{hours:.1f} h: {per_scene / 1000:.2f} KB per scene; {len(file_writes)} file writes "
          f"of up to {max(file_writes) / 1e6:.1f} MB, {len(chunks)} journal chunks")
    assert per_scene <= 10_000
    assert len(file_writes) <= 15
    assert len(chunks) > 1000  # the journal carried the run between rewrites
    final = json.loads(store.objects[KEY])  # the file alone: complete at the end
    assert final["state"] == "finished" and final["totals"]["pending"] == 0
    assert final["totals"] == count_totals(final["scenes"]) == summary.totals()
    assert read_summary(store, KEY) == final


def test_small_runs_rewrite_the_file_itself():
    """A run of a few scenes can afford the whole file at every write: no journal at all."""
    store, clock = MemoryStore(), Clock()
    summary = RunSummary(plan_doc(["a", "b", "c"]))
    writer = SummaryWriter(store, summary, interval_s=5, clock=clock)
    writer.save()
    clock.now = 2
    writer.record("a", result("a"), final=True)
    assert writer.due_in() == 3  # at most one write per interval
    clock.now = 10
    writer.record("b", result("b"), final=True)
    assert writer.due_in() == 0  # the first change after a quiet spell goes out at once
    writer.flush_if_due()
    assert [key for key, _ in store.puts] == [KEY, KEY]
    clock.now = 11
    writer.record("c", result("c", 1, "oom", 100), final=True)
    writer.flush_if_due()
    assert [key for key, _ in store.puts] == [KEY, KEY]
    clock.now = 15
    writer.flush_if_due()
    assert [key for key, _ in store.puts] == [KEY, KEY, KEY]
    assert writer.due_in() is None
    doc = json.loads(store.objects[KEY])
    assert doc["totals"] == {"total": 3, "succeeded": 2, "failed": 1, "pending": 0, "retried": 0}


def test_journal_applies_in_order_and_only_to_its_own_file(capsys):
    store, clock = MemoryStore(), Clock()
    plan = plan_doc(["a", "b", "c"])
    summary = RunSummary(plan)
    writer = SummaryWriter(store, summary, interval_s=0, budget=0, clock=clock)  # journal only
    writer.save()
    writer.record("a", result("a"), final=True)
    writer.flush_if_due()
    writer.record("b", result("b", 1, "timeout", 400), final=False)  # retried
    writer.flush_if_due()
    writer.record("b", result("b", 2), final=True)
    writer.flush_if_due()
    chunks = [key for key, _ in store.puts[1:]]
    assert len(chunks) == 3 and all(k.startswith(KEY[:-5] + ".journal/") for k in chunks)
    assert all(len(json.loads(store.objects[k])["scenes"]) == 1 for k in chunks)

    raw = json.loads(store.objects[KEY])
    assert raw["totals"]["pending"] == 3  # the file alone is behind: nothing rewrote it
    doc = read_summary(store, KEY)
    assert [(s["name"], s["status"], s["attempts"]) for s in doc["scenes"]] == \
        [("a", "SUCCESS", 1), ("b", "SUCCESS", 2), ("c", "PENDING", 0)]
    assert doc["totals"] == {"total": 3, "succeeded": 2, "failed": 0, "pending": 1, "retried": 1}
    assert doc["updated_at"] == json.loads(store.objects[chunks[-1]])["updated_at"]
    assert doc["journal"]["next"] == 4

    # The driver killed, a new run resumes: the journal's successes are carried over.
    store.put_bytes(plan["latest_key"], summary.pointer_bytes(find_previous(store, plan)))
    previous = find_previous(store, dict(plan, run_id="r2"))
    assert previous.run_id == "r1"
    resumed = RunSummary(dict(plan, run_id="r2"), previous.summary)
    assert resumed.pending() == ["c"] and resumed.totals()["succeeded"] == 2

    # A chunk that is not this file's journal (another run's, or garbage) ends the reading.
    store.objects[chunks[1]] = json.dumps({"run_id": "other", "seq": 2, "scenes": []}).encode()
    doc = read_summary(store, KEY)
    assert [s["status"] for s in doc["scenes"]] == ["SUCCESS", "PENDING", "PENDING"]
    assert "not this summary's journal" in capsys.readouterr().out

    # A driver started again on the same plan (same run id) starts a journal of its own: the
    # chunks of the one before are never applied to its file.
    again = SummaryWriter(store, RunSummary(plan), interval_s=0, budget=0, clock=clock)
    again.save()
    assert again.journal_prefix != writer.journal_prefix
    assert [s["status"] for s in read_summary(store, KEY)["scenes"]] == ["PENDING"] * 3


def test_totals_are_kept_as_scenes_are_recorded():
    rng = random.Random(3)
    names = [f"s{i}" for i in range(200)]
    summary = RunSummary(plan_doc(names))
    for name in names:
        for attempt in range(1, rng.randint(1, 3) + 1):
            failure = rng.choice([None, None, "xserver", "script_error"])
            final = failure is None or failure == "script_error" or attempt == 3 \
                or rng.random() < 0.3
            summary.record(name, result(name, attempt, failure), final=final)
            if final:
                break
        assert summary.totals() == count_totals(list(summary.scenes.values()))
    assert json.loads(summary.to_bytes())["totals"] == summary.totals()


# -- the driver, on the session's Ray ------------------------------------------------------------
QUICK_SCRIPT = """#!/bin/sh
mkdir -p "$3/SCENE_HISTORY" && echo '{}' > "$3/SCENE_HISTORY/$MCS_SCENE_NAME-$(date +%Y%m%d-%H%M%S).json"
"""

# The driver with a store that counts what the driver writes (its tasks write with their own).
COUNTING_DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from mcs_pipeline import driver
from mcs_pipeline.store import LocalStore
written = []
class Counting(LocalStore):
    def put_bytes(self, key, data):
        written.append((key, len(data)))
        super().put_bytes(key, data)
driver.make_store = Counting
try:
    code = driver.main(sys.argv[3:])
finally:
    with open(sys.argv[2], "w") as f:
        json.dump(written, f)
sys.exit(code)
"""


@pytest.mark.parametrize("args", [[], ["--summary-interval", "0.1"]],
                         ids=["default", "writing-every-0.1s"])
def test_driver_writes_under_10_kb_per_scene(make_plan, args):
    """300 quick scenes: the driver's summary writes stay under 10 KB per finished scene (a
    rewrite of the whole summary per scene would be ~150 KB per scene here), and the summary is
    complete at the end."""
    plan = make_plan(history_required=True)
    script = plan.dir / "deploy" / "quick.sh"
    script.write_text(QUICK_SCRIPT)
    script.chmod(0o755)
    plan.set(run_script="deploy/quick.sh")
    names = [f"q_{i:03d}" for i in range(300)]
    plan.set(scenes=[{"name": n, "file": f"scenes/{n}.json", "expected_cost": 1,
                       "category": None} for n in names])
    for name in names:
        (plan.dir / "scenes" / f"{name}.json").write_text(json.dumps(
            {"name": name, "version": "2", "goal": {"last_step": 1, "action_list": []}}))
    plan.new_run()
    written_file = plan.dir.parent / "written.json"
    proc = subprocess.run(
        [sys.executable, "-c", COUNTING_DRIVER, str(plan.dir / "pipeline"), str(written_file),
         "--plan", str(plan.dir), "--ray-address", plan.ray_address, *args],
        cwd=REPO, capture_output=True, text=True, timeout=DRIVER_TIMEOUT_S)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0
    written = json.loads(written_file.read_text())
    per_scene = sum(size for _key, size in written) / len(names)
    print(f"{per_scene / 1000:.2f} KB per scene in {len(written)} writes")
    assert per_scene <= 10_000
    summary = plan.summary()
    assert summary["state"] == "finished"
    assert summary["totals"] == {"total": 300, "succeeded": 300, "failed": 0, "pending": 0,
                                 "retried": 0}


def slow_scenes(plan, prefix: str, count: int) -> list[str]:
    """`count` scenes of ~0.6 s, run one at a time (each takes all 4 of the session's CPUs)."""
    plan.set(resources={"num_cpus": 4, "num_gpus": 0})
    names = [f"{prefix}_{i}" for i in range(count)]
    for name in names:
        plan.scene(name, 60)
    return names


def stored_statuses(plan) -> dict:
    """What the store says, as a resume would read it: the file with its journal."""
    doc = read_summary(LocalStore(str(plan.store_dir)), plan.plan["summary_key"])
    return {s["name"]: s["status"] for s in doc["scenes"]} if doc else {}


def test_summary_on_the_store_follows_within_the_interval(make_plan):
    """Mid-run, with only the journal (no budget for rewrites), each finished scene is on the
    store within the interval of its progress line; at the end the file alone is complete."""
    interval = 1.5  # longer than a scene: changes wait for the next write
    plan = make_plan(step_seconds=0.01)
    names = slow_scenes(plan, "f", 8)
    driver = plan.start("--summary-interval", str(interval), "--summary-budget", "0")
    seen_line: dict[str, float] = {}
    seen_stored: dict[str, float] = {}
    while driver.proc.poll() is None:
        now = time.monotonic()
        for line in list(driver.lines):
            name = line.split()[2] if line.startswith("[") else None
            if name in names:
                seen_line.setdefault(name, now)
        for name, status in stored_statuses(plan).items():
            if status == "SUCCESS":
                seen_stored.setdefault(name, now)
        time.sleep(0.02)
    assert driver.finish() == 0
    assert set(seen_line) == set(names)
    lags = {n: seen_stored[n] - seen_line[n] for n in names if n in seen_stored}
    print("lags", lags)
    # Seen while the run went on (the last one or two may come with the final write).
    assert len(lags) >= 5
    assert max(lags.values()) <= interval + 1.0  # 1 s for a loaded machine
    assert [f for f in plan.store_files() if ".journal/" in f]
    final = plan.summary()  # the file, read as the report reads it
    assert final["state"] == "finished"
    assert {s["name"]: s["status"] for s in final["scenes"]} == {n: "SUCCESS" for n in names}


def test_a_killed_driver_leaves_a_summary_to_resume_from(make_plan):
    """SIGKILL: no chance to save. The file is behind, its journal is not: a resume skips every
    scene that finished up to the interval before the kill."""
    marker = uuid.uuid4().hex[:8]
    plan = make_plan(step_seconds=0.01)
    names = slow_scenes(plan, f"k{marker}", 6)
    driver = plan.start("--summary-interval", "0.3", "--summary-budget", "0")
    driver.wait_line(r"^\[3/6\] SUCCESS", timeout_s=60)
    time.sleep(1.0)
    driver.proc.send_signal(signal.SIGKILL)
    assert driver.finish() == -signal.SIGKILL
    finished = [line.split()[2] for line in driver.lines if line.startswith("[")]
    killed = plan.plan["run_id"]

    raw = plan.summary(killed)
    assert raw["state"] == "running" and raw["totals"]["succeeded"] == 0  # only the first write
    stored = stored_statuses(plan)
    assert {n for n, s in stored.items() if s == "SUCCESS"} == set(finished)

    # Leftovers of the task that was running (its worker went with the driver's job).
    time.sleep(1.5)
    for leftover in Path(tempfile.gettempdir()).glob(f"mcs-k{marker}_*"):
        shutil.rmtree(leftover, ignore_errors=True)

    proc = plan.run("--resume")
    assert proc.returncode == 0
    assert f"{len(names) - len(finished)} scenes to run, {len(finished)} already succeeded " \
           f"(resume); resuming from run {killed}" in proc.stdout
    summary = plan.summary()
    assert {s["name"]: (s["status"], s["resumed"]) for s in summary["scenes"]} == \
        {n: ("SUCCESS", n in finished) for n in names}
