"""Driver hygiene: nothing of a scene outlives it (processes, temporary directory), on a timeout,
after a normal exit and when the driver is interrupted. Real Ray, real subprocesses, real signals.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest

from conftest import processes_matching, wait_for

# Children the run scripts start. Each touches a file once it is ready (the TERM-ignoring one
# after ignoring SIGTERM) and carries the test's marker in its arguments, so `ps` finds it.
IGNORES_TERM = ("import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                " pathlib.Path(sys.argv[1]).touch(); time.sleep(600)")
SLEEPS = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(600)"


@pytest.fixture
def marker():
    """A unique marker for the test's processes; any left at the end are killed (by pid)."""
    text = f"hygiene-{uuid.uuid4().hex[:12]}"
    yield text
    for line in processes_matching(text):
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_script(plan, marker: str, body: str) -> Path:
    """Make `body` the plan's run script (bash; its path carries the marker); returns the file in
    which the script records its EVAL_DIR ($3, inside the scene's temporary directory)."""
    script = plan.dir / "deploy" / f"run-{marker}.sh"
    record = plan.dir.parent / "eval_dir.txt"
    script.write_text("#!/usr/bin/env bash\n"
                      f"echo \"$3\" > '{record}.tmp' && mv '{record}.tmp' '{record}'\n"
                      f"M='{marker}'\nREADY='{plan.dir.parent}/ready'\n" + body)
    script.chmod(0o755)
    plan.set(run_script=f"deploy/{script.name}")
    return record


def scene_dir(record: Path) -> Path:
    """The scene's temporary directory (run_scene's mkdtemp), from the EVAL_DIR the script saw."""
    tmp = Path(record.read_text().strip()).parent
    assert tmp.name.startswith("mcs-"), tmp
    return tmp


def test_timeout_kills_the_group_even_after_the_script_exited(make_plan, marker):
    """bash dies of the SIGTERM at once; its child ignores it and must get the SIGKILL."""
    plan = make_plan(history_required=False)
    plan.scene("hyg_timeout", 5)
    record = run_script(plan, marker, f"""
python3 -c '{IGNORES_TERM}' "$READY" "$M-child" &
python3 -c '{SLEEPS}' "$READY-fg" "$M-fg"
""")
    proc = plan.run("--scene-timeout", "3")
    assert proc.returncode == 1
    scene = plan.scene_summary("hyg_timeout")
    assert scene["status"] == "FAILED" and scene["failure_class"] == "timeout"
    assert (plan.dir.parent / "ready").exists()  # the child did ignore SIGTERM in time
    assert processes_matching(marker) == []
    assert not scene_dir(record).exists()


@pytest.mark.parametrize("variant", ["plain", "ignores_term", "own_group"])
def test_leftovers_of_a_finished_script_are_stopped(make_plan, marker, variant):
    """The script exits 0 but leaves a process behind (a stray X server or simulator)."""
    plan = make_plan(history_required=False)
    plan.scene("hyg_left", 5)
    code = IGNORES_TERM if variant == "ignores_term" else SLEEPS
    # `set -m`: the background job gets a process group of its own, as xinit gives its X server;
    # it stays in the script's session.
    record = run_script(plan, marker, ("set -m\n" if variant == "own_group" else "") + f"""
python3 -c '{code}' "$READY" "$M-child" &
for i in $(seq 100); do [[ -e $READY ]] && break; sleep 0.1; done
echo "left a child behind"
exit 0
""")
    proc = plan.run()
    assert proc.returncode == 0
    scene = plan.scene_summary("hyg_left")
    assert scene["status"] == "SUCCESS" and scene["exit_code"] == 0
    assert (plan.dir.parent / "ready").exists()
    assert processes_matching(marker) == []
    assert not scene_dir(record).exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_interrupted_driver_leaves_nothing_of_the_running_scene(make_plan, marker, sig):
    plan = make_plan(history_required=False)
    plan.scene("hyg_int", 5)
    record = run_script(plan, marker, f"""
python3 -c '{IGNORES_TERM}' "$READY" "$M-child" &
python3 -c '{SLEEPS}' "$READY-fg" "$M-fg"
""")
    driver = plan.start()
    ready = plan.dir.parent / "ready"
    tmp = None
    try:
        assert wait_for(lambda: ready.exists() and Path(f"{ready}-fg").exists(), 60), \
            "the run script did not start its children"
        tmp = scene_dir(record)
        assert tmp.is_dir() and len(processes_matching(marker)) == 3  # bash, child, fg
        signalled = time.monotonic()
        driver.proc.send_signal(sig)
        code = driver.finish(timeout_s=60)
        took = time.monotonic() - signalled
        print(f"interruption took {took:.2f} s")
        assert code == 130
        summary = plan.summary()
        assert summary["state"] == "interrupted"
        assert plan.scene_summary("hyg_int", summary)["status"] == "PENDING"
        # Both at once: against a worker killed outright, both fail.
        assert (processes_matching(marker), tmp.exists()) == ([], False)
        # A GitHub cancel gives ~10 s from SIGINT to SIGKILL: stay well inside it.
        assert took < 8
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def test_cancel_waits_for_the_clean_up_then_kills_what_is_stuck(ray_address, tmp_path):
    """The driver's clean-up on real Ray: a non-force cancel reaches a task that runs Python (as
    run_scene's polling does) and waits for its clean-up; a task blocked in one long C call never
    sees it (Ray raises the KeyboardInterrupt between bytecodes) and is killed after the wait."""
    import ray

    from mcs_pipeline import driver

    def cleans_up(started: str, done: str):
        Path(started).touch()
        try:
            while True:
                time.sleep(0.05)
        except KeyboardInterrupt:
            time.sleep(1)
            Path(done).touch()
            raise

    def blocked(started: str):
        Path(started).touch()
        time.sleep(600)

    polite = ray.remote(cleans_up).options(max_retries=0, num_cpus=1).remote(
        str(tmp_path / "a"), str(tmp_path / "a.done"))
    stuck = ray.remote(blocked).options(max_retries=0, num_cpus=1).remote(str(tmp_path / "b"))
    assert wait_for(lambda: (tmp_path / "a").exists() and (tmp_path / "b").exists(), 60)

    started = time.monotonic()
    driver.cancel(ray, [polite, stuck], force=False)
    left = driver.wait_cancelled(ray, [polite, stuck])
    took = time.monotonic() - started
    assert left == [stuck] and (tmp_path / "a.done").exists()
    assert driver.CANCEL_WAIT_S - 0.5 < took < driver.CANCEL_WAIT_S + 2
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(polite, timeout=10)

    driver.cancel(ray, left, force=True)
    assert driver.wait_cancelled(ray, left) == []
    with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError)):
        ray.get(stuck, timeout=10)
