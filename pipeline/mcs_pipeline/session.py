"""A run script's process session: run it with a wall clock, watch for the scene's end, and
leave nothing of it running afterwards (DESIGN §4).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

# Between SIGTERM and SIGKILL for what is left of a run script: after a timeout or a normal exit,
# and (shorter) when the task is cancelled: a GitHub cancel leaves ~10 s for all of the clean-up.
KILL_GRACE_S = 5
INTERRUPT_GRACE_S = 3
POLL_S = 0.05
# How often the scene's end (its history) is looked for while the script runs.
WATCH_S = 1.0


def session_members(sid: int) -> list[tuple[int, int]] | None:
    """(pid, process group) of every live process in the session or process group `sid`.

    Zombies do not count: a child re-parented to a PID 1 that never reaps stays one, and
    `os.killpg(pgid, 0)` succeeds for it. None where there is no /proc (not Linux).
    """
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    members = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2:].split()
        state, pgrp, session = fields[0], int(fields[2]), int(fields[3])
        if state not in (b"Z", b"X", b"x") and sid in (pgrp, session):
            members.append((int(entry), pgrp))
    return members


def signal_session(sid: int, sig: int, members: list[tuple[int, int]] | None) -> None:
    """`sig` to the process group `sid`, and to the session's members in groups of their own
    (a background job of `set -m`, an X server that xinit put in its own group)."""
    targets = [pid for pid, pgrp in members or () if pgrp != sid]
    for kill, target in ((os.killpg, sid), *((os.kill, pid) for pid in targets)):
        try:
            kill(target, sig)
        except (ProcessLookupError, PermissionError):
            pass


def session_alive(sid: int, proc: subprocess.Popen) -> bool:
    proc.poll()  # reap the script itself as soon as it ends
    members = session_members(sid)
    if members is not None:
        return bool(members)
    try:  # no /proc: a zombie counts as alive here, so the grace may run out before SIGKILL
        os.killpg(sid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def wait_until_gone(sid: int, proc: subprocess.Popen, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while session_alive(sid, proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def stop_session(proc: subprocess.Popen, grace_s: float) -> None:
    """Leave nothing of the script running: SIGTERM to its whole session, up to `grace_s` for it
    to end, then SIGKILL to whatever is left, whether or not the script itself is still there.

    An exception during the grace (the task cancelled meanwhile) skips to the SIGKILL.
    """
    sid = proc.pid  # start_new_session: the script leads its session and its process group
    if not session_alive(sid, proc):
        return
    signal_session(sid, signal.SIGTERM, session_members(sid))
    gone = False
    try:
        gone = wait_until_gone(sid, proc, grace_s)
    finally:
        if not gone:
            signal_session(sid, signal.SIGKILL, session_members(sid))
            wait_until_gone(sid, proc, 2)  # SIGKILL is not instant (exit, memory release)


def run_script(script: str, args: list[str], log_path: Path, cwd: Path, timeout_s: float,
               env: dict[str, str], scene_ended: Callable[[], bool] = lambda: False,
               end_grace_s: float = 0) -> tuple[int | None, bool, bool]:
    """Run the script in a session of its own; return (exit code, timed out, lingered).

    `scene_ended` says whether MCS has ended the scene (its history is there). From then on the
    script gets `end_grace_s` to finish (copies, uploads of its own); one still running after
    that is a performer hung after its scene ended: it is stopped (lingered), never timed out.

    Nothing of it outlives the call: after a timeout, after a normal exit (a stray X server or
    simulator) and on any exception, KeyboardInterrupt included, which is how Ray delivers a
    non-force ray.cancel (_thread.interrupt_main()), the whole session is stopped.
    """
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([script, *args], stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                env=env, start_new_session=True)
        grace = INTERRUPT_GRACE_S
        ended = False
        try:
            # Poll, never block in waitpid: Ray's interrupt is only raised between bytecodes.
            deadline = time.monotonic() + timeout_s
            next_watch = time.monotonic() + WATCH_S
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(POLL_S)
                if not ended and time.monotonic() >= next_watch:
                    next_watch = time.monotonic() + WATCH_S
                    ended = scene_ended()
                    if ended:  # from now on the wall clock is the grace
                        deadline = min(deadline, time.monotonic() + end_grace_s)
            still_running = proc.returncode is None
            lingered = still_running and ended
            grace = KILL_GRACE_S
        finally:
            stop_session(proc, grace)
        if not still_running:
            return proc.returncode, False, False
        return None, not lingered, lingered


def node_environment() -> dict[str, str]:
    """The node's own environment for scripts: Ray's venv is not theirs (team scripts call
    `python` expecting the image's interpreter and packages)."""
    env = dict(os.environ)
    ray_bin = os.path.realpath(os.path.dirname(sys.executable))
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and os.path.realpath(p) != ray_bin)
    if env.get("VIRTUAL_ENV") and os.path.realpath(env["VIRTUAL_ENV"]) == os.path.realpath(
            sys.prefix):
        del env["VIRTUAL_ENV"]
    env.pop("PYTHONHOME", None)
    return env
