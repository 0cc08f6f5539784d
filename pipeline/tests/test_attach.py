"""attach.py: the driver detached from the follow, on a real local Ray, with real processes.

The action runs attach.py through `ray exec`; a dropped SSH connection kills the follow. Here the
follow is killed the same way (SIGHUP, then SIGKILL) while the driver keeps running.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

from conftest import RunningDriver, wait_for

EXIT = re.compile(r"^mcs-follow: exit (-?\d+)")
LINE = re.compile(r"^\[mcs:(\d+)\] (.*)$")


def attach(plan, *args: str, from_line: int = 1) -> list[str]:
    return [sys.executable, str(plan.dir / "pipeline" / "attach.py"), "--plan", str(plan.dir),
            *args, "--from-line", str(from_line), "--", "--ray-address", plan.ray_address]


def follow(plan, from_line: int = 1) -> RunningDriver:
    """attach.py in the background, as `ray exec` runs it on the head."""
    running = RunningDriver(attach(plan, from_line=from_line), None,
                            plan.dir.parent / f"attach-{len(plan.started)}.stderr")
    plan.started.append(running)
    return running


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def slow_plan(make_plan, scenes: int = 6, steps: int = 20):
    plan = make_plan(step_seconds=0.05)
    for i in range(scenes):
        plan.scene(f"s_{i}", steps)
    return plan


def numbered(lines: list[str]) -> list[tuple[int, str]]:
    return [(int(m[1]), m[2]) for m in map(LINE.match, lines) if m]


def driver_log(plan) -> list[str]:
    return (plan.dir / "driver.log").read_text().splitlines()


def test_follow_to_the_end(make_plan):
    plan = slow_plan(make_plan, scenes=3, steps=5)
    proc = subprocess.run(attach(plan), capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines[0] == "mcs-follow: following from line 1"
    assert EXIT.match(lines[-1])[1] == "0", proc.stdout
    shown = numbered(lines)
    assert [n for n, _ in shown] == list(range(1, len(shown) + 1))
    assert [text for _, text in shown] == driver_log(plan)
    assert (plan.dir / "driver.exit").read_text().strip() == "0"
    assert plan.summary()["state"] == "finished"


def test_a_dropped_follow_does_not_stop_the_driver_and_no_line_or_scene_repeats(make_plan):
    plan = slow_plan(make_plan)
    shown: list[tuple[int, str]] = []
    for drop in (signal.SIGHUP, signal.SIGKILL):
        first = follow(plan, len(shown) + 1)
        first.wait_line(r"^\[mcs:\d+\] \[\d+/6\] ", timeout_s=60)
        first.proc.send_signal(drop)  # the SSH connection drops: the follow dies with it
        first.finish()
        shown += numbered(first.lines)
        assert shown and [n for n, _ in shown] == list(range(1, len(shown) + 1))
        driver_pid = int((plan.dir / "driver.pid").read_text())
        assert alive(driver_pid), "the driver must outlive its follow"
    last = follow(plan, len(shown) + 1)
    assert last.finish() == 0
    assert last.lines[0] == f"mcs-follow: following from line {len(shown) + 1}"
    assert EXIT.match(last.lines[-1])[1] == "0"
    shown += numbered(last.lines)

    # Every line exactly once, in order, and the whole of the driver's output.
    assert [n for n, _ in shown] == list(range(1, len(shown) + 1))
    assert [text for _, text in shown] == driver_log(plan)
    # One driver, every scene run once.
    assert len(re.findall(r"^mcs-pipeline: 6 scenes to run", "\n".join(driver_log(plan)),
                          re.M)) == 1
    summary = plan.summary()
    assert summary["state"] == "finished" and summary["totals"]["succeeded"] == 6
    assert all(s["attempts"] == 1 and len(s["history"]) == 1 for s in summary["scenes"])
    logs = [k for k in plan.store_files() if k.endswith("_log.txt")]
    assert len(logs) == 6


def test_attach_twice_at_once_starts_one_driver(make_plan):
    plan = slow_plan(make_plan, scenes=4, steps=10)
    one, two = follow(plan), follow(plan)
    assert one.finish() == 0 and two.finish() == 0
    assert numbered(one.lines) == numbered(two.lines)
    assert len(re.findall(r"^mcs-pipeline: 4 scenes to run", "\n".join(driver_log(plan)),
                          re.M)) == 1
    assert all(s["attempts"] == 1 for s in plan.summary()["scenes"])


def test_stop_interrupts_the_driver_and_waits_for_its_summary(make_plan):
    plan = slow_plan(make_plan, scenes=8, steps=40)
    following = follow(plan)
    following.wait_line(r"^\[mcs:\d+\] \[1/8\] ", timeout_s=60)
    stop = subprocess.run([sys.executable, str(plan.dir / "pipeline" / "attach.py"), "--plan",
                           str(plan.dir), "--stop", "--wait", "30"],
                          capture_output=True, text=True, timeout=60)
    assert stop.stdout.strip().splitlines()[-1] == "mcs-follow: stopped 130", stop.stdout
    assert following.finish() == 0
    assert EXIT.match(following.lines[-1])[1] == "130"
    summary = plan.summary()
    assert summary["state"] == "interrupted" and summary["totals"]["pending"] > 0
    driver_pid = int((plan.dir / "driver.pid").read_text())
    assert wait_for(lambda: not alive(driver_pid), 10)


def test_stop_before_any_start_says_so(make_plan):
    plan = slow_plan(make_plan, scenes=1)
    stop = subprocess.run([sys.executable, str(plan.dir / "pipeline" / "attach.py"), "--plan",
                           str(plan.dir), "--stop"], capture_output=True, text=True, timeout=30)
    assert stop.stdout.strip() == "mcs-follow: not started"
    assert json.loads((plan.dir / "plan.json").read_text())["scenes"]
    assert not (plan.dir / "driver.log").exists()
