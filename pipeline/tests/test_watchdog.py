"""watchdog.py: when the head tears its own cluster down, and why it says so.

The decision with a fake clock over observations; the observations from real driver files in a
temporary plan directory (attach.py's names, the supervisor a real process); the watch loop with
fake Ray liveness and a fake teardown; attach.py's follow touching the heartbeat. The watchdog on
a real head node, torn down and exiting, is test/watchdog.test.ts's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import attach
import watchdog
from watchdog import Observation, Settings, decide, observe, watch

T0 = 1_800_000_000.0  # the cluster's start (wall-clock seconds)
MIN = 60.0


def settings(idle=5.0, max_minutes=390.0, keep=False, plan_dir=Path("/nonexistent")) -> Settings:
    return Settings(cluster_name="mcs-demo-level2-1-1-eval-7", plan_dir=plan_dir,
                    bootstrap_config=Path("/nonexistent/ray_bootstrap_config.yaml"),
                    idle_minutes=idle, max_minutes=max_minutes, keep_cluster=keep,
                    poll_seconds=1.0)


def seen(at_minutes: float, driver: str, finished: float | None = None,
         heartbeat: float | None = None) -> Observation:
    """An observation at T0 + `at_minutes`, the other times in minutes after T0 too."""
    return Observation(now=T0 + at_minutes * MIN, started=T0, driver=driver,
                       finished_at=None if finished is None else T0 + finished * MIN,
                       heartbeat_at=None if heartbeat is None else T0 + heartbeat * MIN)


# ── the decision ─────────────────────────────────────────────────────────────────────────────


def test_a_finished_driver_nobody_follows_tears_down_after_the_idle_limit():
    # The follow ended with the driver at minute 10 (its last heartbeat).
    assert decide(settings(), seen(14.9, "finished", finished=10, heartbeat=10)) is None
    assert decide(settings(), seen(15, "finished", finished=10, heartbeat=10)) == (
        "driver finished 5.0 min ago and nobody has followed for 5.0 min (limit 5 min)")


def test_a_runner_lost_mid_run_the_driver_finishes_later_goes_at_once():
    # Heartbeats stopped at minute 3; the driver went on to finish its run at minute 20.
    assert decide(settings(), seen(20, "finished", finished=20, heartbeat=3)) == (
        "driver finished 0.0 min ago and nobody has followed for 17.0 min (limit 5 min)")


def test_a_running_driver_keeps_the_cluster_however_long_nobody_follows():
    assert decide(settings(), seen(200, "running", heartbeat=3)) is None
    assert decide(settings(), seen(200, "running")) is None


def test_no_heartbeat_while_the_driver_never_started():
    # The runner died during `ray up` or the sync: no heartbeat ever, counted from the start.
    assert decide(settings(), seen(4.9, "idle")) is None
    assert decide(settings(), seen(5, "idle")) == (
        "the runner's heartbeat has been missing for 5.0 min (limit 5 min) and the driver never "
        "started")
    # A follow came, then stopped before the driver was started.
    assert decide(settings(), seen(7.5, "idle", heartbeat=1)) == (
        "the runner's heartbeat has been missing for 6.5 min (limit 5 min) and the driver never "
        "started")


def test_no_heartbeat_while_the_driver_is_gone():
    assert decide(settings(), seen(30, "gone", heartbeat=26)) is None
    assert decide(settings(), seen(31.5, "gone", heartbeat=26)) == (
        "the runner's heartbeat has been missing for 5.5 min (limit 5 min) and the driver is gone "
        "(its supervisor vanished without an exit status)")


@pytest.mark.parametrize("driver", ["idle", "finished", "gone"])
def test_a_fresh_heartbeat_prevents_acting(driver):
    # Long after the start and the driver's end, but someone followed 4 minutes ago.
    assert decide(settings(), seen(100, driver, finished=10, heartbeat=96)) is None


def test_a_heartbeat_older_than_the_cluster_counts_from_the_start():
    # A previous cluster's heartbeat in the same folder does not count against this one.
    assert decide(settings(), seen(4, "idle", heartbeat=-60)) is None


@pytest.mark.parametrize("driver", ["idle", "running", "finished", "gone"])
def test_keep_cluster_turns_off_the_idle_conditions(driver):
    assert decide(settings(keep=True), seen(300, driver, finished=10, heartbeat=10)) is None


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("driver", ["idle", "running", "finished", "gone"])
def test_the_maximum_lifetime_always_acts(driver, keep):
    s = settings(max_minutes=390, keep=keep)
    assert decide(s, seen(389.9, driver, finished=389, heartbeat=389.9)) is None
    assert decide(s, seen(390, driver, finished=389, heartbeat=390)) == (
        "the cluster has run for 390.0 min, its maximum lifetime is 390 min (cluster-max-minutes)")


def test_fractional_limits_as_tests_use_them():
    s = settings(idle=0.25, max_minutes=0.5)
    assert decide(s, seen(0.2, "finished", finished=0, heartbeat=0)) is None
    assert decide(s, seen(0.3, "finished", finished=0, heartbeat=0)) == (
        "driver finished 0.3 min ago and nobody has followed for 0.3 min (limit 0.25 min)")
    assert decide(s, seen(0.5, "running", heartbeat=0.5)) == (
        "the cluster has run for 0.5 min, its maximum lifetime is 0.5 min (cluster-max-minutes)")


# ── what it observes: the driver's files (attach.py's names) ───────────────────────────────


@pytest.fixture
def files(tmp_path) -> attach.Files:
    return attach.Files(tmp_path / "mcs-demo-level2-1-1-eval-7")


def exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_no_plan_directory_yet_is_an_idle_driver(files):
    # The watchdog starts during `ray up`; the plan is synced after it.
    assert not files.started.parent.exists()
    assert observe(files, T0, T0 + 1) == Observation(T0 + 1, T0, "idle", None, None)


def test_a_driver_started_by_a_live_supervisor_is_running(files):
    files.started.parent.mkdir()
    files.started.write_text(f"{os.getpid()}\n")
    files.heartbeat.touch()
    got = observe(files, T0, time.time())
    assert got.driver == "running"
    assert got.heartbeat_at == files.heartbeat.stat().st_mtime


def test_a_marker_without_its_pid_yet_is_running(files):
    files.started.parent.mkdir()
    files.started.write_text("")  # start_once has created it, not written the PID yet
    assert observe(files, T0, time.time()).driver == "running"


def test_an_exit_status_is_a_finished_driver_with_its_time(files):
    files.started.parent.mkdir()
    files.started.write_text(f"{exited_pid()}\n")
    files.exit.write_text("0\n")
    os.utime(files.exit, (T0 + 60, T0 + 60))
    assert observe(files, T0, T0 + 120) == Observation(T0 + 120, T0, "finished", T0 + 60, None)


def test_a_vanished_supervisor_without_an_exit_status_is_gone(files):
    files.started.parent.mkdir()
    files.started.write_text(f"{exited_pid()}\n")
    assert observe(files, T0, time.time()).driver == "gone"


# ── the loop ─────────────────────────────────────────────────────────────────────────────────


class FakeClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run_watch(s: Settings, clock: FakeClock, ray=lambda: True):
    acted: list[Settings] = []
    lines: list[str] = []
    result = watch(s, T0, clock=clock, sleep=clock.sleep, ray_running=ray,
                   act=lambda st, _files: acted.append(st), log=lines.append)
    return result, acted, lines


def test_the_loop_acts_once_the_limit_passes_and_says_why(files):
    files.started.parent.mkdir()
    files.started.write_text(f"{exited_pid()}\n")
    files.exit.write_text("0\n")
    os.utime(files.exit, (T0 + 10, T0 + 10))
    s = settings(idle=0.5, plan_dir=files.started.parent)
    clock = FakeClock(T0 + 10)
    result, acted, lines = run_watch(s, clock)
    assert result == "acted" and acted == [s]
    assert clock.now == T0 + 30  # the first poll 30 s after the start (idle counts from there)
    assert lines == [
        "driver finished 0.3 min ago and nobody has followed for 0.5 min (limit 0.5 min): "
        "tearing the cluster down",
        "done: exiting"]


def test_the_loop_exits_without_acting_once_ray_has_stopped_here():
    polls = iter([True, True, False, True, False, False, True])
    clock = FakeClock(T0)
    result, acted, lines = run_watch(settings(idle=60), clock, ray=lambda: next(polls))
    # One poll without Ray is not enough (a restart); two in a row are.
    assert result == "ray stopped" and acted == []
    assert clock.now == T0 + 5
    assert lines == ["Ray has stopped on this node (the cluster was torn down): exiting"]


def test_the_loop_outlives_a_file_it_cannot_read(files, monkeypatch):
    calls = iter([OSError("EIO"), OSError("EIO"), "idle"])

    def flaky(*args):
        what = next(calls)
        if isinstance(what, Exception):
            raise what
        return Observation(T0 + 600, T0, what, None, None)

    monkeypatch.setattr(watchdog, "observe", flaky)
    result, acted, lines = run_watch(settings(), FakeClock(T0))
    assert result == "acted"
    assert lines[0] == "could not check the run: OSError('EIO')"  # said once, not per poll
    assert lines[1].startswith("the runner's heartbeat has been missing for 10.0 min")


def test_settings_from_the_command_line_the_cluster_yaml_runs():
    # As src/cluster.ts watchdogCommand writes it (test/cluster.test.ts checks that side).
    s = watchdog.parse(["--cluster", "mcs-x", "--plan", "~/mcs-x", "--idle-minutes", "0.25",
                        "--max-minutes", "390", "--keep-cluster"])
    assert s == Settings(cluster_name="mcs-x", plan_dir=Path.home() / "mcs-x", idle_minutes=0.25,
                         max_minutes=390, keep_cluster=True,
                         bootstrap_config=Path.home() / "ray_bootstrap_config.yaml", poll_seconds=1)
    assert not watchdog.parse(["--cluster", "x", "--plan", "/p", "--idle-minutes", "15",
                               "--max-minutes", "390"]).keep_cluster


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "soon"])
def test_a_limit_that_is_not_a_positive_number_is_refused(bad, capsys):
    with pytest.raises(SystemExit):
        watchdog.parse(["--cluster", "x", "--plan", "/p", "--idle-minutes", bad,
                        "--max-minutes", "390"])
    assert "--idle-minutes" in capsys.readouterr().err


def test_one_watchdog_per_cluster_and_the_first_start_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(watchdog, "LOCK_WAIT_S", 0)
    lock = tmp_path / "watchdog.lock"
    fd, started = watchdog.hold_lock(lock)
    # Another process (a second `ray up`'s watchdog) cannot take it while this one holds it.
    other = subprocess.run(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR);"
         "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", str(lock)], capture_output=True)
    assert other.returncode != 0 and b"BlockingIOError" in other.stderr
    os.close(fd)
    # Once it is gone, the next one takes over with the cluster's first start, not its own.
    fd, again = watchdog.hold_lock(lock)
    os.close(fd)
    assert again == started


# ── the heartbeat: attach.py's follow ───────────────────────────────────────────────────────


def test_the_follow_touches_the_heartbeat(tmp_path):
    """attach.py following a driver that already ended: the heartbeat is there, fresh."""
    plan = tmp_path / "plan"
    plan.mkdir()
    (plan / "plan.json").write_text("{}")
    files = attach.Files(plan)
    files.started.write_text(f"{exited_pid()}\n")
    files.log.write_text("one\ntwo\n")
    files.exit.write_text("0\n")
    before = time.time()
    out = subprocess.run([sys.executable, attach.__file__, "--plan", str(plan)],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.splitlines()[-1] == "mcs-follow: exit 0"
    assert files.heartbeat.stat().st_mtime >= before - 1


def test_the_heartbeat_is_renewed_every_few_seconds_not_every_poll(tmp_path, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(attach.time, "monotonic", lambda: now[0])
    beat = attach.Heartbeat(tmp_path / "heartbeat")
    touched = []
    monkeypatch.setattr(Path, "touch", lambda self: touched.append(now[0]))
    for step in range(10):  # 10 polls over 5 s
        now[0] = 100.0 + step * 0.5
        beat()
    assert touched == [100.0, 102.0, 104.0]
    assert attach.HEARTBEAT_S == 2
