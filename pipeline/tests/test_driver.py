"""The driver against a real local Ray: real subprocesses, real signals, a real local store."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import processes_matching, wait_for

PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] (\S+) (\S+) in \S+ \(attempt (\d+), node (\S+)\).*"
                      r"\| ETA \d+:\d\d:\d\d$")


def progress_lines(stdout: str) -> list[re.Match]:
    return [m for m in map(PROGRESS.match, stdout.splitlines()) if m]


def assert_outputs_in_store(plan, scene: dict, history: bool = True) -> None:
    """The scene's output keys follow DESIGN §4 and exist as files in the store."""
    outputs = scene["outputs"]
    log = re.fullmatch(plan.log_key_pattern(scene["name"]), outputs["log"])
    assert log
    assert (plan.store_dir / outputs["log"]).is_file()
    if history:
        assert outputs["history"] == plan.history_key(scene["name"])
        doc = json.loads((plan.store_dir / outputs["history"]).read_text())
        assert doc["info"]["name"] == scene["name"] and doc["steps"]
        # One attempt's files carry one timestamp: the log's is the history's.
        assert log[1] == doc["info"]["timestamp"]
    else:
        assert outputs["history"] is None
        assert not (plan.store_dir / plan.history_key(scene["name"])).exists()


def test_success(make_plan):
    plan = make_plan()
    for name, steps in (("s_one", 5), ("s_two", 8), ("s_three", 3)):
        plan.scene(name, steps)
    proc = plan.run()
    assert proc.returncode == 0

    summary = plan.summary()
    assert summary["state"] == "finished" and summary["finished_at"]
    assert summary["run_id"] == plan.plan["run_id"] and summary["module"] == "demo"
    assert summary["totals"] == {"total": 3, "succeeded": 3, "failed": 0, "pending": 0,
                                 "retried": 0}
    assert [s["name"] for s in summary["scenes"]] == ["s_one", "s_two", "s_three"]
    for scene in summary["scenes"]:
        assert scene["status"] == "SUCCESS" and scene["failure_class"] is None
        assert scene["attempts"] == 1 and scene["exit_code"] == 0
        assert scene["duration_s"] > 0 and scene["node"]
        assert scene["resumed"] is False and scene["log_excerpt"] is None
        assert len(scene["history"]) == 1 and scene["history"][0]["node"] == scene["node"]
        assert_outputs_in_store(plan, scene)

    lines = progress_lines(proc.stdout)
    assert [(m[1], m[2]) for m in lines] == [("1", "3"), ("2", "3"), ("3", "3")]
    assert sorted(m[4] for m in lines) == ["s_one", "s_three", "s_two"]
    assert all(m[3] == "SUCCESS" for m in lines)


def test_script_error_is_not_retried(make_plan):
    plan = make_plan(retries=2)
    plan.scene("ok_a", 5).scene("broken", 5, {"exit_code": 3}).scene("ok_b", 5)
    proc = plan.run()
    assert proc.returncode == 1

    summary = plan.summary()
    broken = plan.scene_summary("broken", summary)
    assert broken["status"] == "FAILED" and broken["failure_class"] == "script_error"
    assert broken["exit_code"] == 3 and broken["attempts"] == 1 and len(broken["history"]) == 1
    assert "injected failure: exiting with code 3" in broken["log_excerpt"]
    assert_outputs_in_store(plan, broken, history=False)
    for name in ("ok_a", "ok_b"):
        assert plan.scene_summary(name, summary)["status"] == "SUCCESS"
    assert summary["totals"]["failed"] == 1 and summary["totals"]["succeeded"] == 2
    assert summary["state"] == "finished"


def test_timeout_retried_and_process_killed(make_plan):
    plan = make_plan()
    plan.scene("hang_scene_t1", 5, {"hang": True})
    started = time.monotonic()
    proc = plan.run("--scene-timeout", "2", "--retries", "1")
    assert proc.returncode == 1
    assert time.monotonic() - started < 60

    scene = plan.scene_summary("hang_scene_t1")
    assert scene["status"] == "FAILED" and scene["failure_class"] == "timeout"
    assert scene["attempts"] == 2 and scene["exit_code"] is None
    assert [h["failure_class"] for h in scene["history"]] == ["timeout", "timeout"]
    assert all(h["duration_s"] >= 2 for h in scene["history"])
    assert "scene timed out after 2 s" in scene["log_excerpt"]
    assert "injected hang" in scene["log_excerpt"]
    assert "retrying hang_scene_t1 after timeout (attempt 2 of 2)" in proc.stdout
    # The hung player (exec'd by the run script, its own session) is gone after each attempt.
    assert processes_matching("hang_scene_t1.json") == []


def test_xserver_failure_retried_then_success(make_plan):
    plan = make_plan()
    plan.scene("flaky_x", 5, {"xserver_fail_attempts": 1})
    proc = plan.run("--retries", "2")
    assert proc.returncode == 0

    summary = plan.summary()
    scene = plan.scene_summary("flaky_x", summary)
    assert scene["status"] == "SUCCESS" and scene["attempts"] == 2
    assert [(h["attempt"], h["failure_class"], h["exit_code"]) for h in scene["history"]] == \
        [(1, "xserver", 1), (2, None, 0)]
    assert scene["failure_class"] is None and scene["log_excerpt"] is None
    assert_outputs_in_store(plan, scene)
    assert summary["totals"]["retried"] == 1
    assert "retrying flaky_x after xserver (attempt 2 of 3)" in proc.stdout
    assert len(progress_lines(proc.stdout)) == 1
    # Each attempt keeps its own log: the X-server failure is not overwritten by the retry.
    first, second = (h["log"] for h in scene["history"])
    assert first != second and second == scene["outputs"]["log"]
    assert "X server failed to start" in (plan.store_dir / first).read_text()


def test_out_of_memory_not_retried(make_plan):
    plan = make_plan()
    plan.scene("oom_scene", 5, {"oom": True})
    proc = plan.run("--retries", "3")
    assert proc.returncode == 1

    scene = plan.scene_summary("oom_scene")
    assert scene["status"] == "FAILED" and scene["failure_class"] == "oom"
    assert scene["attempts"] == 1 and scene["exit_code"] == 137
    assert "MemoryError: out of memory" in scene["log_excerpt"]
    assert "retrying" not in proc.stdout


def test_missing_outputs(make_plan):
    plan = make_plan(retries=2)
    plan.scene("no_history", 5, {"skip_history": True})
    proc = plan.run()
    assert proc.returncode == 1

    scene = plan.scene_summary("no_history")
    assert scene["status"] == "FAILED" and scene["failure_class"] == "missing_outputs"
    # Retried, as the original pipeline did: usually a crash before MCS's start_scene.
    assert scene["exit_code"] == 0 and scene["attempts"] == 3
    assert [a["failure_class"] for a in scene["history"]] == ["missing_outputs"] * 3
    assert "no history written" in scene["log_excerpt"]
    assert_outputs_in_store(plan, scene, history=False)


def test_resume_runs_only_what_did_not_succeed(make_plan):
    plan = make_plan()
    plan.scene("r_ok1", 5).scene("r_fix", 5, {"exit_code": 4}).scene("r_ok2", 5)
    assert plan.run().returncode == 1
    first = plan.summary()
    assert plan.scene_summary("r_fix", first)["status"] == "FAILED"
    files_before = plan.store_files()
    time.sleep(1.1)  # a re-run log of the same second would have the same key

    plan.scene("r_fix", 5)  # the same scene without the fault
    proc = plan.run("--resume")
    assert proc.returncode == 0
    assert "2 already succeeded (resume)" in proc.stdout

    second = plan.summary()
    assert second["state"] == "finished"
    assert second["totals"] == {"total": 3, "succeeded": 3, "failed": 0, "pending": 0,
                                "retried": 0}
    for name in ("r_ok1", "r_ok2"):
        before, after = plan.scene_summary(name, first), plan.scene_summary(name, second)
        assert after["resumed"] is True and after["status"] == "SUCCESS"
        assert after["attempts"] == before["attempts"] == 1
        assert after["history"] == before["history"]
        assert after["outputs"] == before["outputs"]
    fixed = plan.scene_summary("r_fix", second)
    assert fixed["status"] == "SUCCESS" and fixed["resumed"] is False
    assert fixed["attempts"] == 1 and len(fixed["history"]) == 1
    assert_outputs_in_store(plan, fixed)

    new_files = plan.store_files() - files_before
    assert {f for f in new_files if f.endswith("_log.txt")} == {fixed["outputs"]["log"]}
    assert [m[4] for m in progress_lines(proc.stdout)] == ["r_fix"]


def test_longest_first(make_plan):
    # One scene at a time on the session's 4 CPUs: start order == finish order.
    plan = make_plan(resources={"num_cpus": 4, "num_gpus": 0})
    for name, steps in (("short_50", 50), ("long_400", 400), ("mid_200", 200)):
        plan.scene(name, steps)
    proc = plan.run()
    assert proc.returncode == 0
    assert [m[4] for m in progress_lines(proc.stdout)] == ["long_400", "mid_200", "short_50"]
    started = {s["name"]: s["history"][0]["started_at"] for s in plan.summary()["scenes"]}
    assert started["long_400"] <= started["mid_200"] <= started["short_50"]


def test_previous_durations_win_over_last_step(make_plan):
    plan = make_plan(resources={"num_cpus": 4, "num_gpus": 0})
    for name, steps in (("short_50", 50), ("long_400", 400), ("mid_200", 200)):
        plan.scene(name, steps)
    plan.put_previous("earlier-run", [
        {"name": "short_50", "status": "SUCCESS", "duration_s": 30.0},
        {"name": "mid_200", "status": "SUCCESS", "duration_s": 20.0},
        {"name": "long_400", "status": "SUCCESS", "duration_s": 10.0},
    ])
    proc = plan.run()
    assert proc.returncode == 0
    assert "; previous run earlier-run (" in proc.stdout
    assert [m[4] for m in progress_lines(proc.stdout)] == ["short_50", "mid_200", "long_400"]
    summary = plan.summary()
    # Not a resume: everything ran again and the expected costs came from the durations.
    assert {s["name"]: (s["resumed"], s["expected_cost"]) for s in summary["scenes"]} == \
        {"short_50": (False, 50), "long_400": (False, 400), "mid_200": (False, 200)}


def test_summary_is_atomic_and_readable_mid_run(make_plan):
    plan = make_plan(resources={"num_cpus": 4, "num_gpus": 0}, step_seconds=0.01)
    for i in range(6):
        plan.scene(f"m_{i}", 100)  # ~1 s each, one at a time
    driver = plan.start("--summary-interval", "0.2")
    reads = []
    while driver.proc.poll() is None:
        try:
            data = plan.summary_path.read_bytes()
        except FileNotFoundError:
            data = None
        if data is not None:
            reads.append(json.loads(data))  # a torn write would raise here
        time.sleep(0.02)
    assert driver.finish() == 0
    final = plan.summary()

    assert len(reads) > 20
    states = [r["state"] for r in reads]
    assert set(states) <= {"running", "finished"}
    assert states == sorted(states, key=lambda state: state == "finished")
    succeeded = [r["totals"]["succeeded"] for r in reads]
    assert succeeded == sorted(succeeded)
    assert any(0 < r["totals"]["succeeded"] < 6 and r["state"] == "running" for r in reads)
    assert all(r["totals"]["total"] == 6 and len(r["scenes"]) == 6 for r in reads)
    assert final["state"] == "finished" and final["totals"]["succeeded"] == 6
    # No temporary files left beside the summary.
    assert not [f for f in plan.store_files() if "/." in f]


def interrupt_mid_run(make_plan, sig: signal.Signals, hang: str):
    """4 scenes of ~1 s one at a time, then a hanging one; signal after the first finished."""
    plan = make_plan(resources={"num_cpus": 4, "num_gpus": 0}, step_seconds=0.01)
    for i in range(4):
        plan.scene(f"i_{i}", 100)  # equal costs: by name, i_0 first
    plan.scene(hang, 1, {"hang": True})  # the cheapest: runs last, if ever
    driver = plan.start()
    driver.wait_line(r"^\[1/5\] SUCCESS", timeout_s=60)
    driver.proc.send_signal(sig)
    code = driver.finish(timeout_s=60)
    return plan, driver, code


def check_interrupted(plan, driver, code, hang: str) -> None:
    summary = plan.summary()
    done = {m[4] for m in map(PROGRESS.match, driver.lines) if m}
    assert "i_0" in done
    # What finished before the signal stays SUCCESS; the rest (cancelled or never started) is
    # PENDING with no attempt recorded, ready for --resume.
    for scene in summary["scenes"]:
        if scene["name"] in done:
            assert scene["status"] == "SUCCESS" and scene["attempts"] == 1
        else:
            assert scene["status"] == "PENDING" and scene["attempts"] == 0
    assert summary["totals"]["pending"] == 5 - len(done) > 0
    assert any("mcs-pipeline: interrupted" in line for line in driver.lines)
    assert summary["state"] == "interrupted" and summary["finished_at"]
    assert code == 130
    assert processes_matching(f"{hang}.json") == []


def test_interrupted_by_sigint(make_plan):
    plan, driver, code = interrupt_mid_run(make_plan, signal.SIGINT, "hang_int")
    check_interrupted(plan, driver, code, "hang_int")


def test_interrupted_by_sigterm(make_plan):
    plan, driver, code = interrupt_mid_run(make_plan, signal.SIGTERM, "hang_term")
    try:
        check_interrupted(plan, driver, code, "hang_term")
    finally:
        # If the driver died without cancelling, do not leave the hung player behind.
        leftovers = wait_for(lambda: processes_matching("hang_term.json"), 1)
        for line in leftovers or []:
            os.kill(int(line.split()[0]), signal.SIGKILL)


def test_interrupted_during_ray_startup(make_plan):
    plan = make_plan()
    plan.scene("early", 5)
    driver = plan.start()
    driver.wait_line(r"^mcs-pipeline: 1 scenes to run", timeout_s=30)
    driver.proc.send_signal(signal.SIGINT)  # now in `import ray` / ray.init()
    code = driver.finish(timeout_s=60)
    summary = plan.summary()
    assert plan.scene_summary("early", summary)["status"] == "PENDING"
    assert summary["state"] == "interrupted"
    assert code == 130


def test_ray_address_local_starts_its_own_ray(make_plan, ray_address):
    plan = make_plan()
    plan.scene("own_ray", 5)
    # Another Ray announced in the environment must not capture a `local` run.
    env = dict(os.environ, RAY_ADDRESS=ray_address)
    proc = plan.run("--num-cpus", "1", env=env, ray_address="local")
    assert proc.returncode == 0
    assert plan.scene_summary("own_ray")["status"] == "SUCCESS"


# -- the previous run: one summary per run, found through the latest-run pointer ----------------
def done_scene(name: str, duration_s: float = 1.0) -> dict:
    """A scene as an earlier run's summary has it after a success."""
    return {"name": name, "status": "SUCCESS", "attempts": 1, "exit_code": 0,
            "failure_class": None, "duration_s": duration_s, "node": "127.0.0.1",
            "expected_cost": 5, "resumed": False,
            "outputs": {"history": f"f/{name}.json", "log": f"f/{name}_log.txt", "videos": []},
            "log_excerpt": None,
            "history": [{"attempt": 1, "exit_code": 0, "failure_class": None,
                         "duration_s": duration_s, "node": "127.0.0.1",
                         "started_at": "2026-01-01T00:00:00.000Z", "log": f"f/{name}_log.txt"}]}


def statuses(summary: dict) -> dict:
    return {s["name"]: (s["status"], s["resumed"]) for s in summary["scenes"]}


def test_resume_through_the_pointer(make_plan):
    plan = make_plan()
    plan.scene("p_a", 5, {"exit_code": 3}).scene("p_b", 5)
    # The shared key of the version before pointers: once there is a pointer, never read.
    legacy = plan.put_previous("legacy-run", [done_scene("p_a"), done_scene("p_b")], legacy=True)
    legacy_bytes = (plan.store_dir / legacy).read_bytes()

    assert plan.run().returncode == 1                      # run 1: p_a fails
    run1 = plan.plan["run_id"]
    plan.scene("p_a", 5).scene("p_b", 5, {"exit_code": 4})
    assert plan.run().returncode == 1                      # run 2: p_b fails
    run2, key2 = plan.plan["run_id"], plan.plan["summary_key"]
    assert plan.latest()["run_id"] == run2
    plan.scene("p_b", 5)
    proc = plan.run("--resume")                            # run 3 resumes from run 2, the latest
    assert proc.returncode == 0
    run3 = plan.plan["run_id"]

    start = next(line for line in proc.stdout.splitlines() if "scenes to run" in line)
    assert (f"1 scenes to run, 1 already succeeded (resume); resuming from run {run2} "
            f"({plan.store_dir / key2});") in start
    summaries = {run_id: plan.summary(run_id) for run_id in (run1, run2, run3)}
    # Each run's summary is its own, under its own key, none overwritten by a later run.
    for run_id, summary in summaries.items():
        assert summary["run_id"] == run_id and summary["state"] == "finished"
        assert summary["summary_key"] == plan.summary_key_of(run_id)
    assert statuses(summaries[run1]) == {"p_a": ("FAILED", False), "p_b": ("SUCCESS", False)}
    assert statuses(summaries[run2]) == {"p_a": ("SUCCESS", False), "p_b": ("FAILED", False)}
    assert statuses(summaries[run3]) == {"p_a": ("SUCCESS", True), "p_b": ("SUCCESS", False)}
    assert plan.scene_summary("p_a", summaries[run3])["history"] == \
        plan.scene_summary("p_a", summaries[run2])["history"]
    assert [m[4] for m in progress_lines(proc.stdout)] == ["p_b"]

    pointer = plan.latest()
    assert pointer == {"schema_version": 1, "run_id": run3, "module": "demo",
                       "metadata": "level2", "summary_key": plan.summary_key_of(run3),
                       "started_at": summaries[run3]["started_at"],
                       "previous": {"run_id": run2, "summary_key": key2}}
    assert (plan.store_dir / legacy).read_bytes() == legacy_bytes
    assert not [f for f in plan.store_files() if "/." in f]  # no temporary files left


def test_legacy_key_fallback(make_plan):
    """A store written before pointers existed: its one summary is the previous run."""
    plan = make_plan()
    plan.scene("l_done", 5).scene("l_todo", 5)
    legacy = plan.put_previous("pre-pointer-run", [done_scene("l_done", 3.0)], legacy=True)
    legacy_bytes = (plan.store_dir / legacy).read_bytes()
    assert not plan.latest_path.exists()

    proc = plan.run("--resume")
    assert proc.returncode == 0
    assert (f"1 scenes to run, 1 already succeeded (resume); resuming from run pre-pointer-run "
            f"({plan.store_dir / legacy}, the legacy shared key);") in proc.stdout
    summary = plan.summary()
    assert summary["run_id"] == plan.plan["run_id"] != "pre-pointer-run"
    assert statuses(summary) == {"l_done": ("SUCCESS", True), "l_todo": ("SUCCESS", False)}
    assert [m[4] for m in progress_lines(proc.stdout)] == ["l_todo"]
    # The legacy summary stays as it was; from now on the pointer leads the way.
    assert (plan.store_dir / legacy).read_bytes() == legacy_bytes
    assert plan.latest()["run_id"] == plan.plan["run_id"]
    assert plan.latest()["previous"] == {"run_id": "pre-pointer-run", "summary_key": legacy}


def test_a_run_never_resumes_from_itself(make_plan):
    plan = make_plan()
    plan.scene("n_a", 5).scene("n_b", 5, {"exit_code": 3})
    assert plan.run("--resume").returncode == 1
    first = plan.plan["run_id"]
    assert "no previous run to resume from" in plan.run("--resume", run_id=first).stdout
    # Started again on the same plan: the pointer names this very run; its own summary (a
    # SUCCESS) is not a previous run, so nothing is carried over.
    again = plan.summary()
    assert again["run_id"] == first
    assert statuses(again) == {"n_a": ("SUCCESS", False), "n_b": ("FAILED", False)}

    plan.scene("n_b", 5)
    assert plan.run("--resume").returncode == 0            # a new run resumes from the first
    second = plan.plan["run_id"]
    assert statuses(plan.summary()) == {"n_a": ("SUCCESS", True), "n_b": ("SUCCESS", False)}
    plan.scene("n_b", 5, {"exit_code": 5})
    proc = plan.run("--resume", run_id=second)             # the second, started again
    # Resumed from the run before it (the pointer's `previous`), not from its own summary,
    # which had n_b as SUCCESS: n_b runs again (and fails now).
    assert proc.returncode == 1
    assert f"resuming from run {first} ({plan.store_dir / plan.summary_key_of(first)});" \
        in proc.stdout
    assert statuses(plan.summary()) == {"n_a": ("SUCCESS", True), "n_b": ("FAILED", False)}
    assert plan.latest()["previous"]["run_id"] == first


def test_pointer_written_after_first_save(make_plan, monkeypatch, capsys):
    """The pointer never names a summary that is not in the store yet."""
    from mcs_pipeline import driver
    from mcs_pipeline.store import LocalStore

    plan = make_plan()
    plan.scene("w_a", 5).scene("w_b", 5)
    earlier = plan.put_previous("earlier-run", [done_scene("w_a"), done_scene("w_b")])
    run_id = plan.new_run()
    summary_key, latest_key = plan.plan["summary_key"], plan.plan["latest_key"]
    puts: list[str] = []

    class Recording(LocalStore):
        def put_bytes(self, key: str, data: bytes) -> None:
            if key == latest_key:
                named = json.loads(data)["summary_key"]
                assert json.loads((self.root / named).read_bytes())["run_id"] == run_id
            puts.append(key)
            super().put_bytes(key, data)

    def no_ray(*_args):
        raise AssertionError("nothing should run: every scene succeeded in the earlier run")

    monkeypatch.setattr(driver, "make_store", Recording)
    # Everything succeeded before: nothing to run, so no Ray in this process (which holds the
    # session's Ray: a driver's ray.shutdown() here would stop it).
    monkeypatch.setattr(driver, "init_ray", no_ray)
    code = driver.run(driver.parse_args(["--plan", str(plan.dir), "--resume"]))
    assert code == 0, capsys.readouterr().out
    assert puts == [summary_key, latest_key, summary_key]
    assert plan.latest() == {"schema_version": 1, "run_id": run_id, "module": "demo",
                             "metadata": "level2", "summary_key": summary_key,
                             "started_at": plan.summary()["started_at"],
                             "previous": {"run_id": "earlier-run", "summary_key": earlier}}


def test_pointer_is_there_when_the_driver_starts(make_plan):
    plan = make_plan()
    plan.scene("early_p", 5)
    driver = plan.start()
    driver.wait_line(r"^mcs-pipeline: 1 scenes to run; no previous run;", timeout_s=30)
    pointer = plan.latest()  # before any scene ran
    assert pointer["run_id"] == plan.plan["run_id"]
    assert pointer["summary_key"] == plan.plan["summary_key"]
    assert json.loads((plan.store_dir / pointer["summary_key"]).read_text())["run_id"] == \
        plan.plan["run_id"]
    assert driver.finish() == 0


def test_lost_node_requeued_without_using_retries(make_plan):
    plan = make_plan()
    # The scene's Ray worker dies under it twice (how a lost node looks to the driver); with no
    # retries at all it still runs a third time, and succeeds.
    plan.scene("lost_twice", 5, {"lose_node_attempts": 2})
    # A timeout after a lost node still has its own retry.
    plan.scene("lost_then_hang", 5, {"lose_node_attempts": 1, "hang": True})
    proc = plan.run("--retries", "1", "--scene-timeout", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr

    scene = plan.scene_summary("lost_twice")
    assert scene["status"] == "SUCCESS" and scene["attempts"] == 3
    assert [(h["attempt"], h["failure_class"]) for h in scene["history"]] == \
        [(1, "node_lost"), (2, "node_lost"), (3, None)]
    assert "retrying lost_twice after node_lost (attempt 2; a lost node uses none of the " \
        "scene's retries)" in proc.stdout
    hung = plan.scene_summary("lost_then_hang")
    assert hung["status"] == "FAILED" and hung["failure_class"] == "timeout"
    assert [h["failure_class"] for h in hung["history"]] == ["node_lost", "timeout", "timeout"]
    assert "retrying lost_then_hang after timeout (attempt 3 of 3)" in proc.stdout


def test_node_lost_every_time_ends(make_plan):
    plan = make_plan()
    plan.scene("always_lost", 5, {"lose_node_attempts": 99})
    proc = plan.run("--retries", "1")
    assert proc.returncode == 1
    scene = plan.scene_summary("always_lost")
    # NODE_LOST_REQUEUES free re-runs, then the scene's own retry, then it counts as failed.
    assert scene["status"] == "FAILED" and scene["failure_class"] == "node_lost"
    assert [h["failure_class"] for h in scene["history"]] == ["node_lost"] * 5


def test_nodes_recorded_for_the_cost_estimate(make_plan):
    """The summary names the cluster's nodes from Ray's node table, typed and priced by the plan."""
    price = {"instance_type": "m5.large", "head": True, "spot": False, "usd_per_hour": 0.096,
             "price_source": "on-demand list, us-east-1, 2026-06"}
    plan = make_plan(node_types={"ray.head.default": price})
    plan.scene("s_one", 3)
    before = time.time()
    assert plan.run().returncode == 0
    summary = plan.summary()
    [node] = summary["nodes"]  # the session's one local Ray node
    assert node["head"] is True and node["node_type"] == "ray.head.default"
    assert node["instance_type"] == "m5.large" and node["usd_per_hour"] == 0.096
    assert node["ended_at"] is None  # alive when the driver saved
    assert node["address"] == summary["scenes"][0]["node"]
    started = datetime.fromisoformat(node["started_at"].replace("Z", "+00:00")).timestamp()
    assert started < before  # the node was up before this run started


def services_script(plan, body: str) -> None:
    script = plan.dir / "deploy" / "services.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    plan.set(node_services="deploy/services.sh")


def test_node_services_start_once_per_node_and_stop_with_the_run(make_plan, tmp_path):
    """Started before the node's first scene, outside the scenes' sessions (they survive each
    scene's clean-up), stopped by the driver when the run ends."""
    record = tmp_path / "services"
    plan = make_plan()
    services_script(plan, f'sleep 300 & echo "$! $1 $2" >> {record}\n')
    for i in range(4):
        plan.scene(f"svc_{i}", 3)
    proc = plan.run()
    assert proc.returncode == 0, proc.stdout[-2000:]
    [line] = record.read_text().splitlines()  # one node here: one start
    pid, config, eval_dir = line.split()
    assert "[MCS]" in Path(config).read_text() and Path(eval_dir).is_dir()
    assert "node services stopped on 1 nodes" in proc.stdout
    state = Path(f"/proc/{pid}/stat")
    assert not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_node_services_that_do_not_start_fail_the_scene_and_are_retried(make_plan):
    plan = make_plan(retries=1)
    services_script(plan, "echo 'service: port 9000 taken'; exit 3\n")
    plan.scene("svc", 3)
    proc = plan.run()
    assert proc.returncode == 1
    scene = plan.scene_summary("svc")
    assert [a["failure_class"] for a in scene["history"]] == ["node_services"] * 2
    assert "service: port 9000 taken" in scene["log_excerpt"]
    assert "node services exited 3" in scene["log_excerpt"]
