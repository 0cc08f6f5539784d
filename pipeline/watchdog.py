#!/usr/bin/env python3
"""The head node's watchdog: the cluster tears itself down when the runner cannot.

If the runner dies (a lost hosted runner, a SIGKILL, a GitHub outage) the action's post step never
runs. The plan installs this on the head (src/cluster.ts renderClusterYaml): the cluster YAML
mounts pipeline/ into the plan directory, `~/<cluster name>`, and the last of
`head_start_ray_commands` starts it with its settings, detached (setsid nohup), so it outlives
`ray up`'s SSH session. It logs to `~/<cluster name>/watchdog.log`.

It tears the cluster down when (N = idle_minutes):
  - the driver has finished and nobody has followed the run for N minutes;
  - the runner's heartbeat (the follow touches `heartbeat` in the plan directory every few
    seconds, see attach.py) has been missing for N minutes while no driver runs: never started
    (the plan directory may not even be there yet: it is synced after `ray up`) or gone (its
    supervisor vanished without an exit status);
  - the cluster has run for max_minutes, whatever else.
keep_cluster turns the first two off, never the third. A running driver keeps the cluster: it is
left to finish its run (its results are saved), then the first condition applies.

Tearing down: a running driver is stopped first (SIGTERM: it saves the summary as interrupted),
then `ray down -y ~/ray_bootstrap_config.yaml` (with the node's own credentials: on AWS its
instance profile), which terminates the cluster's instances, this head's included, then `ray stop`
here for a head that is still up (with Ray's local provider `ray down` on the head only updates
its bookkeeping: the node stays and so would its Ray).

It exits by itself once Ray has stopped on this node: a normal `ray down` from the runner stops
Ray (`ray stop` picks its victims by name, never this), and the watchdog must not outlive its
cluster. One watchdog per cluster (a lock in the plan directory).

  watchdog.py --cluster NAME --plan DIR --idle-minutes N --max-minutes M [--keep-cluster]
      watch (in the foreground: the cluster YAML's command detaches it)

Standard library only (and attach.py beside it, for the driver's files).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attach import Files, alive, read_int, stop  # noqa: E402  (attach.py beside this file)

POLL_S = 1.0
RAY_PROCESSES = ("gcs_server", "raylet")  # the head's Ray is up while one of these runs
GONE_POLLS = 2  # polls in a row without them: Ray has stopped on this node
LOCK_WAIT_S = 60  # for the watchdog of a previous `ray up` of this cluster to exit
DRIVER_STOP_WAIT_S = 30
DOWN_ATTEMPTS = 3
DOWN_RETRY_S = 30
DOWN_TIMEOUT_S = 900


@dataclass(frozen=True)
class Settings:
    """What the cluster YAML's command line says (src/cluster.ts watchdogCommand)."""

    cluster_name: str
    plan_dir: Path
    idle_minutes: float
    max_minutes: float
    keep_cluster: bool
    bootstrap_config: Path = Path("~/ray_bootstrap_config.yaml").expanduser()
    poll_seconds: float = POLL_S


@dataclass(frozen=True)
class Observation:
    """What the watchdog sees at `now` (wall-clock seconds, like file times)."""

    now: float
    started: float  # when the cluster's first watchdog started
    driver: str  # idle (never started) | running | finished | gone (vanished, no exit status)
    finished_at: float | None  # driver.exit's time
    heartbeat_at: float | None  # the follow's last heartbeat


def mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def observe(files: Files, started: float, now: float) -> Observation:
    heartbeat = mtime(files.heartbeat)
    finished = mtime(files.exit)
    if finished is not None:
        driver = "finished"
    elif not files.started.exists():
        driver = "idle"
    else:
        supervisor = read_int(files.started)  # None for a moment while it is being started
        if supervisor is None or alive(supervisor):
            driver = "running"
        elif (finished := mtime(files.exit)) is not None:  # it ended since we looked
            driver = "finished"
        else:
            driver = "gone"
    return Observation(now, started, driver, finished, heartbeat)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def decide(settings: Settings, seen: Observation) -> str | None:
    """Why the cluster must go now (one line naming the condition and its figures), or None."""
    lifetime = seen.now - seen.started
    if lifetime >= settings.max_minutes * 60:
        return (f"the cluster has run for {minutes(lifetime)} min, its maximum lifetime is "
                f"{settings.max_minutes:g} min (cluster-max-minutes)")
    if settings.keep_cluster:
        return None
    # Nobody has followed since the last heartbeat, or since the cluster started if none came.
    followed = seen.started if seen.heartbeat_at is None else max(seen.heartbeat_at, seen.started)
    unfollowed = seen.now - followed
    if unfollowed < settings.idle_minutes * 60:
        return None
    limit = f"(limit {settings.idle_minutes:g} min)"
    if seen.driver == "finished":
        since = seen.now - (seen.finished_at or seen.now)
        return (f"driver finished {minutes(since)} min ago and nobody has followed for "
                f"{minutes(unfollowed)} min {limit}")
    if seen.driver in ("idle", "gone"):
        what = ("never started" if seen.driver == "idle"
                else "is gone (its supervisor vanished without an exit status)")
        return (f"the runner's heartbeat has been missing for {minutes(unfollowed)} min {limit} "
                f"and the driver {what}")
    return None


class RayOnThisNode:
    """Whether the head's Ray runs: processes named RAY_PROCESSES of this user (by /proc). The
    ones found are watched by PID; /proc is scanned again only once they are gone."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    @staticmethod
    def _is_ray(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() not in RAY_PROCESSES:
                    return False
            return os.stat(f"/proc/{pid}").st_uid == os.getuid() and alive(pid)
        except OSError:
            return False

    def running(self) -> bool:
        self.pids = [pid for pid in self.pids if self._is_ray(pid)]
        if not self.pids:
            self.pids = [int(e) for e in os.listdir("/proc") if e.isdigit() and self._is_ray(int(e))]
        return bool(self.pids)


def say(text: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} {text}", flush=True)


def ray_command() -> str:
    """The `ray` of the session that started Ray (on PATH), else the one beside this Python."""
    beside = Path(sys.executable).with_name("ray")
    return shutil.which("ray") or (str(beside) if beside.exists() else "ray")


def run(command: list[str]) -> int:
    """A command with its output in this log; its exit status (-1 when it could not run)."""
    say("$ " + " ".join(command))
    try:
        return subprocess.run(command, stdin=subprocess.DEVNULL, timeout=DOWN_TIMEOUT_S).returncode
    except (OSError, subprocess.TimeoutExpired) as e:
        say(f"{command[0]}: {e}")
        return -1


def tear_down(settings: Settings, files: Files) -> None:
    """Stop a running driver, `ray down` the cluster, then stop Ray here if the head is still up."""
    if observe(files, 0, time.time()).driver == "running":
        said = io.StringIO()
        with contextlib.redirect_stdout(said):
            stop(files, DRIVER_STOP_WAIT_S)
        say(f"stopping the driver: {said.getvalue().strip()}")
    ray = ray_command()
    for attempt in range(1, DOWN_ATTEMPTS + 1):
        code = run([ray, "down", "-y", str(settings.bootstrap_config)])
        say(f"ray down exited {code}")
        if code == 0:
            break
        if attempt < DOWN_ATTEMPTS:
            time.sleep(DOWN_RETRY_S)
    # Still here: the provider left this node up (Ray's local provider). Stop its Ray, as the
    # runner's `ray down` does over SSH.
    say(f"ray stop exited {run([ray, 'stop'])}")


def watch(settings: Settings, started: float, *,
          clock: Callable[[], float] = time.time,
          sleep: Callable[[float], None] = time.sleep,
          ray_running: Callable[[], bool] | None = None,
          act: Callable[[Settings, Files], None] = tear_down,
          log: Callable[[str], None] = say) -> str:
    """Poll until the cluster must go (then `act`) or Ray has stopped here; says which."""
    files = Files(settings.plan_dir)
    ray_running = ray_running or RayOnThisNode().running
    misses = 0
    failure = None
    while True:
        misses = 0 if ray_running() else misses + 1
        if misses >= GONE_POLLS:
            log("Ray has stopped on this node (the cluster was torn down): exiting")
            return "ray stopped"
        try:
            reason = decide(settings, observe(files, started, clock()))
        except Exception as e:  # a watchdog must not die of a file it could not read
            if repr(e) != failure:
                log(f"could not check the run: {e!r}")
            failure, reason = repr(e), None
        if reason:
            log(f"{reason}: tearing the cluster down")
            act(settings, files)
            log("done: exiting")
            return "acted"
        sleep(settings.poll_seconds)


def hold_lock(path: Path) -> tuple[int, float] | None:
    """The cluster's watchdog lock (waits for a previous watchdog to exit), and the time the
    cluster's first watchdog started, kept in the lock file; None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(1)
    try:
        started = float(os.pread(fd, 64, 0).decode().strip())
    except ValueError:
        started = time.time()
        os.pwrite(fd, f"{started}\n".encode(), 0)
    return fd, started


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of minutes")
    return value


def parse(argv: list[str]) -> Settings:
    p = argparse.ArgumentParser(prog="watchdog.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster", required=True)
    p.add_argument("--plan", required=True, type=Path)
    p.add_argument("--idle-minutes", required=True, type=positive)
    p.add_argument("--max-minutes", required=True, type=positive)
    p.add_argument("--keep-cluster", action="store_true")
    args = p.parse_args(argv)
    return Settings(cluster_name=args.cluster, plan_dir=args.plan.expanduser(),
                    idle_minutes=args.idle_minutes, max_minutes=args.max_minutes,
                    keep_cluster=args.keep_cluster)


def main(argv: list[str]) -> int:
    settings = parse(argv)
    settings.plan_dir.mkdir(parents=True, exist_ok=True)
    held = hold_lock(settings.plan_dir / "watchdog.lock")
    if held is None:
        say(f"another watchdog watches cluster {settings.cluster_name}: exiting")
        return 0
    _, started = held
    idle, life = f"{settings.idle_minutes:g} min", f"at {settings.max_minutes:g} min of life"
    rules = (f"{life} only (keep-cluster)" if settings.keep_cluster else
             f"when the driver has finished and nobody has followed for {idle}, when the "
             f"runner's heartbeat has been missing for {idle} while no driver runs, or {life}")
    say(f"watchdog {os.getpid()} for cluster {settings.cluster_name}: tears it down {rules} "
        f"(the cluster started {minutes(time.time() - started)} min ago)")
    watch(settings, started)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
