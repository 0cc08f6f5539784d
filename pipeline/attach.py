#!/usr/bin/env python3
"""Start the driver on the head node detached from SSH, follow its output, or stop it.

The action runs this through `ray exec`. The driver runs in a session of its own under a small
supervisor that records its exit status, with its output kept in the plan directory, so a dropped
SSH connection ends only the follow: the action reconnects and follows on from the next line.
While it follows, it touches `heartbeat` in the plan directory every few seconds: the head's
watchdog (watchdog.py) takes it as the sign that the runner is still there.

  attach.py --plan DIR [--from-line N] [-- DRIVER ARGS]   start the driver once, then follow it
  attach.py --plan DIR --stop [--wait S]                  SIGTERM the driver, wait for its exit

Output protocol (stdout; the action parses it, anything else is the shell's or Ray's):
  mcs-follow: following from line N
  [mcs:N] TEXT           line N (from 1) of the driver's output
  mcs-follow: exit CODE  the driver has ended with CODE (after its last line); -1 if it vanished
  mcs-follow: error MSG  following cannot work (retrying will not help)
  mcs-follow: stopped CODE | not started | still running after S s
Standard library only: it runs before anything else on the head.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.2
START_WAIT_S = 30  # for the supervisor to record the driver's PID
HEARTBEAT_S = 2  # how often a follow touches the heartbeat (the head's watchdog reads it)


class Files:
    """The driver's files in the plan directory (the plan is the run's own: one driver per run)."""

    def __init__(self, plan: Path):
        self.started = plan / "driver.started"  # created once, exclusively: holds the supervisor PID
        self.pid = plan / "driver.pid"
        self.log = plan / "driver.log"
        self.exit = plan / "driver.exit"
        # Touched by every follow while it runs: the runner is there (watchdog.py reads its time).
        self.heartbeat = plan / "heartbeat"


class Heartbeat:
    """The follow's sign of life for the head's watchdog: the heartbeat file's time, renewed at
    most every HEARTBEAT_S (call it as often as you like)."""

    def __init__(self, path: Path):
        self.path = path
        self.last = float("-inf")

    def __call__(self) -> None:
        if time.monotonic() - self.last < HEARTBEAT_S:
            return
        self.last = time.monotonic()
        try:
            self.path.touch()
        except OSError:
            pass


def say(text: str) -> None:
    print(text, flush=True)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (an exited child nobody reaped yet) has ended too.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def start_once(files: Files, plan: Path, driver_args: list[str]) -> None:
    """Start the supervisor unless this run's driver was started before (by an earlier attach)."""
    try:
        fd = os.open(files.started, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return
    command = [sys.executable, str(Path(__file__).resolve()), "--plan", str(plan), "--supervise",
               "--", *driver_args]
    supervisor = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with os.fdopen(fd, "w") as f:
        f.write(f"{supervisor.pid}\n")


def supervise(files: Files, plan: Path, driver_args: list[str]) -> int:
    """Run the driver (in this new session), then record how it ended."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    driver = [sys.executable, str(plan / "pipeline" / "run_eval.py"), "--plan", str(plan),
              *driver_args]
    with open(files.log, "ab") as log:
        proc = subprocess.Popen(driver, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=plan,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        write_atomic(files.pid, f"{proc.pid}\n")
        code = proc.wait()
    write_atomic(files.exit, f"{code}\n")
    return 0


def follow(files: Files, from_line: int) -> int:
    """Print the driver's output from line `from_line` on, until the driver has ended."""
    heartbeat = Heartbeat(files.heartbeat)
    deadline = time.monotonic() + START_WAIT_S
    while not files.log.exists() and not files.exit.exists():
        heartbeat()
        supervisor = read_int(files.started)
        if time.monotonic() > deadline or (supervisor and not alive(supervisor)):
            say("mcs-follow: error the driver did not start (no driver.log)")
            return 1
        time.sleep(POLL_S)
    say(f"mcs-follow: following from line {from_line}")
    number = 0
    pending = b""
    with open(files.log, "rb") as log:
        while True:
            heartbeat()
            # The exit file is written after the driver's last line: read it before draining.
            ended = read_int(files.exit)
            chunk = log.read()
            if chunk:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    number += 1
                    if number >= from_line:
                        print(f"[mcs:{number}] {line.decode(errors='replace')}")
                sys.stdout.flush()
                continue
            supervisor = read_int(files.started)
            if ended is None and supervisor and not alive(supervisor):
                ended = read_int(files.exit)
                if ended is None:
                    say("mcs-follow: exit -1 (the driver's supervisor vanished)")
                    return 0
            if ended is not None:
                if pending:
                    number += 1
                    if number >= from_line:
                        print(f"[mcs:{number}] {pending.decode(errors='replace')}")
                say(f"mcs-follow: exit {ended}")
                return 0
            time.sleep(POLL_S)


def stop(files: Files, wait_s: float) -> int:
    """SIGTERM the driver (it saves the summary as interrupted) and wait for it to end."""
    if not files.started.exists():
        say("mcs-follow: not started")
        return 0
    deadline = time.monotonic() + wait_s
    while (pid := read_int(files.pid)) is None and not files.exit.exists():
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    if pid is not None and not files.exit.exists():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    while not files.exit.exists() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    code = read_int(files.exit)
    say(f"mcs-follow: stopped {code}" if code is not None
        else f"mcs-follow: still running after {wait_s:.0f} s")
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="attach.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", required=True, type=Path)
    p.add_argument("--from-line", type=int, default=1)
    p.add_argument("--stop", action="store_true")
    p.add_argument("--wait", type=float, default=20.0)
    p.add_argument("--supervise", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("driver_args", nargs="*")
    args = p.parse_args(argv)
    plan = args.plan.expanduser().resolve()
    files = Files(plan)
    if args.supervise:
        return supervise(files, plan, args.driver_args)
    if args.stop:
        return stop(files, args.wait)
    if not (plan / "plan.json").is_file():
        say(f"mcs-follow: error no plan at {plan}")
        return 1
    # A hang-up between creating the marker and recording the supervisor must not strand it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    start_once(files, plan, args.driver_args)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    return follow(files, args.from_line)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
