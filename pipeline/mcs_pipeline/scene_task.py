"""One scene, one attempt: the body of the Ray task.

The task writes the MCS config and the scene to a temporary directory of its own (concurrent
tasks on one node never share a path), runs the module's run script with a timeout, keeps its
output as the scene log, classifies a failure, and uploads the outputs to the store under the
names of DESIGN §4. It returns a plain dict; the driver owns the summary and the retries.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from .store import open_store

# Classes a new attempt can cure: a slow controller, a flaky X server, a lost node, our own
# transient errors (e.g. an upload). Out of memory, script errors and missing outputs repeat.
RETRYABLE = frozenset({"timeout", "xserver", "node_lost", "task_error"})

XSERVER_FAILURE = re.compile(
    r"X server failed to start|\(EE\) Server terminated|cannot open display|unable to open display",
    re.IGNORECASE,
)
OUT_OF_MEMORY = re.compile(
    r"MemoryError|out of memory|Cannot allocate memory|std::bad_alloc|oom-kill", re.IGNORECASE
)
EXCERPT_LINES = 40
EXCERPT_BYTES = 4000
# Between SIGTERM and SIGKILL for what is left of a run script: after a timeout or a normal exit,
# and (shorter) when the task is cancelled: a GitHub cancel leaves ~10 s for all of the clean-up.
KILL_GRACE_S = 5
INTERRUPT_GRACE_S = 3
POLL_S = 0.05


def utc_now() -> str:
    return iso(datetime.now(timezone.utc))


def iso(moment: datetime) -> str:
    """UTC, to the millisecond: benchmarks and the report compute makespans from these."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def node_address() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # outside a Ray worker (unit use): the host name is the best we have
        return socket.gethostname()


def classify(exit_code: int | None, timed_out: bool, log_tail: str, has_history: bool,
             history_required: bool) -> str | None:
    """The failure class of a finished attempt, or None when it succeeded."""
    if timed_out:
        return "timeout"
    if exit_code == 0:
        return "missing_outputs" if history_required and not has_history else None
    if XSERVER_FAILURE.search(log_tail):
        return "xserver"
    # 137 / -9: killed by SIGKILL, which on a scene node means the kernel's OOM killer.
    if exit_code in (137, -signal.SIGKILL) or OUT_OF_MEMORY.search(log_tail):
        return "oom"
    return "script_error"


def excerpt(text: str) -> str:
    tail = "\n".join(text.splitlines()[-EXCERPT_LINES:])
    return tail[-EXCERPT_BYTES:]


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
               env: dict[str, str]) -> tuple[int | None, bool]:
    """Run the script in a session of its own; return (exit code, timed out).

    Nothing of it outlives the call: after a timeout, after a normal exit (a stray X server or
    simulator) and on any exception, KeyboardInterrupt included, which is how Ray delivers a
    non-force ray.cancel (_thread.interrupt_main()), the whole session is stopped.
    """
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([script, *args], stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                env=env, start_new_session=True)
        grace = INTERRUPT_GRACE_S
        try:
            # Poll, never block in waitpid: Ray's interrupt is only raised between bytecodes.
            deadline = time.monotonic() + timeout_s
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(POLL_S)
            timed_out = proc.returncode is None
            grace = KILL_GRACE_S
        finally:
            stop_session(proc, grace)
        return (None, True) if timed_out else (proc.returncode, False)


def remove_tree(path: Path) -> None:
    """shutil.rmtree that an interrupt arriving half-way (Ray raises it once) does not cut short."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def find_outputs(eval_dir: Path, scene: str) -> tuple[Path | None, list[Path]]:
    """The newest scene history for this scene and its videos, where MCS leaves them."""
    histories = sorted((eval_dir / "SCENE_HISTORY").glob(f"{glob_escape(scene)}*.json"),
                       key=lambda p: p.stat().st_mtime)
    videos = sorted((eval_dir / scene).glob("*.mp4")) if (eval_dir / scene).is_dir() else []
    return (histories[-1] if histories else None), videos


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def upload_outputs(spec: dict, log_path: Path, history: Path | None, videos: list[Path],
                   started: datetime) -> dict:
    names = spec["names"]
    store = open_store(spec["store"])
    base = f"{names['prefix']}_{spec['name']}"
    outputs: dict = {"history": None, "log": None, "videos": []}
    # Milliseconds in the timestamp: a quick retry must not overwrite the failed attempt's log.
    stamp = started.strftime("%Y%m%d-%H%M%S-") + f"{started.microsecond // 1000:03d}"
    outputs["log"] = f"{names['folder']}/{base}_{stamp}_log.txt"
    store.put_file(outputs["log"], str(log_path))
    if history is not None:
        outputs["history"] = f"{names['folder']}/{base}.json"
        store.put_file(outputs["history"], str(history))
    for video in videos:
        kind = video.stem.removeprefix(spec["name"]).strip("_-") or "video"
        key = f"{names['movies_folder']}/{base}_{kind}.mp4"
        store.put_file(key, str(video))
        outputs["videos"].append(key)
    return outputs


def run_scene(spec: dict) -> dict:
    """Play one attempt of one scene. `spec` is built by the driver (see driver.scene_spec)."""
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    name = spec["name"]
    workdir = None
    try:  # a cancel (KeyboardInterrupt) may come at any point: the finally still removes it
        workdir = Path(tempfile.mkdtemp(prefix=f"mcs-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-"))
        config = workdir / "mcs_config.ini"
        config.write_text(spec["mcs_config"])
        scene_file = workdir / f"{name}.json"
        scene_file.write_text(spec["scene"])
        eval_dir = Path(spec["eval_dir"]) if spec.get("eval_dir") else workdir / "eval"
        eval_dir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / "scene.log"
        env = dict(os.environ, MCS_ATTEMPT=str(spec["attempt"]), MCS_SCENE_NAME=name)
        # The run script finds the same Python the driver uses (no slow or missing shims).
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        exit_code, timed_out = run_script(spec["run_script"],
                                          [str(config), str(scene_file), str(eval_dir)],
                                          log_path, eval_dir, spec["timeout_s"], env)
        duration = time.monotonic() - t0
        history, videos = find_outputs(eval_dir, name)
        log_text = log_path.read_text(errors="replace")
        failure = classify(exit_code, timed_out, log_text[-20000:], history is not None,
                           spec["history_required"])
        if timed_out:
            log_text += f"\n[mcs-pipeline] scene timed out after {spec['timeout_s']:.0f} s\n"
            log_path.write_text(log_text)
        outputs = upload_outputs(spec, log_path, history, videos, started)
        return {
            "attempt": spec["attempt"],
            "exit_code": exit_code,
            "failure_class": failure,
            "duration_s": round(duration, 3),
            "node": node_address(),
            "started_at": iso(started),
            "outputs": outputs,
            "log_excerpt": excerpt(log_text) if failure else None,
        }
    finally:
        if workdir is not None:
            remove_tree(workdir)
