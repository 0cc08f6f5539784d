"""The Ray driver: runs a plan's scenes as Ray tasks, retries what can be cured, keeps the summary.

Runs on a cluster's head node (`--ray-address auto`, the default) or on this machine
(`--ray-address local`). Exit status: 0 every scene succeeded, 1 some failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import time
from pathlib import Path

from . import scene_task, session
from .budget import Budget, plural
from .nodes import cluster_nodes
from .scene_set import SceneSetError, fetch_logged
from .failures import RETRYABLE
from .node_services import stop_all as stop_node_services
from .scene_task import excerpt, run_scene
from .schedule import expected_costs, longest_first, seconds_per_step
from .store import make_store
from .summary import (FILE_BUDGET_PER_ATTEMPT, SUMMARY_INTERVAL_S, RunSummary, SummaryWriter,
                      find_previous, read_launch_phases)


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C: Ray lets only KeyboardInterrupt out of a blocking wait."""


def on_term(_signum, _frame):
    raise Interrupted()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="run_eval.py", description=__doc__)
    p.add_argument("--plan", required=True, help="the plan directory (holds plan.json)")
    p.add_argument("--retries", type=int, help="retries for retryable failures (default: the plan's)")
    p.add_argument("--resume", action="store_true", default=None,
                   help="skip scenes the store's summary already has as SUCCESS")
    p.add_argument("--scene-timeout", type=float, help="seconds per scene (default: the plan's)")
    p.add_argument("--ray-address", default="auto",
                   help="'auto' (a running cluster), 'local' (start Ray here), or an address")
    p.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    p.add_argument("--summary-interval", type=float, default=SUMMARY_INTERVAL_S,
                   help="at most this many seconds between a finished scene and its summary "
                        f"write (default {SUMMARY_INTERVAL_S:.0f})")
    p.add_argument("--summary-budget", type=float, default=FILE_BUDGET_PER_ATTEMPT,
                   help="bytes of whole-summary rewrites allowed per finished attempt during the "
                        "run, beyond which changes go to journal chunks (default "
                        f"{FILE_BUDGET_PER_ATTEMPT})")
    args = p.parse_args(argv)
    if args.retries is not None and args.retries < 0:
        p.error("--retries must be a non-negative integer")
    if args.summary_interval < 0 or args.summary_budget < 0:
        p.error("--summary-interval and --summary-budget must not be negative")
    return args


def load_plan(plan_dir: Path) -> dict:
    """plan.json, checked against schemas/plan.schema.json (exit 2 when it does not match), with
    the scenes of an s3:// scene set fetched (exit 2 when one cannot be read)."""
    from . import schemas

    plan = json.loads((plan_dir / "plan.json").read_text())
    problem = schemas.problem(plan, schemas.PLAN)
    if problem is not None:
        print(f"mcs-pipeline: {plan_dir / 'plan.json'} is not a plan: {problem}", file=sys.stderr,
              flush=True)
        raise SystemExit(2)
    # Paths in plan.json are relative to the plan directory, wherever it was synced to.
    plan["run_script"] = str((plan_dir / plan["run_script"]).resolve())
    if plan.get("node_services"):
        plan["node_services"] = str((plan_dir / plan["node_services"]).resolve())
    plan["mcs_config_text"] = (plan_dir / plan["mcs_config"]).read_text()
    for scene in plan["scenes"]:
        if "file" in scene:
            scene["path"] = plan_dir / scene["file"]
    try:
        fetch_logged(plan["scenes"])
    except SceneSetError as error:
        print(f"mcs-pipeline: the scene set cannot be run: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    return plan


# What each step before the driver took, as the front end measured it (beside plan.json).
LAUNCH_PHASES = "launch-phases.json"

# Seconds a run script may go on after MCS wrote the scene's history (plan.scene_end_grace_s).
DEFAULT_SCENE_END_GRACE_S = 120


def scene_spec(plan: dict, scene: dict, attempt: int, timeout_s: float, gate=None) -> dict:
    spec = {
        "name": scene["name"],
        "attempt": attempt,
        "scene": scene["text"] if "text" in scene else scene["path"].read_text(),
        "mcs_config": plan["mcs_config_text"],
        "run_script": plan["run_script"],
        "eval_dir": plan.get("eval_dir"),
        "timeout_s": timeout_s,
        "history_required": plan["history_required"],
        "scene_end_grace_s": plan.get("scene_end_grace_s", DEFAULT_SCENE_END_GRACE_S),
        "node_services": plan.get("node_services"),
        "run_id": plan["run_id"],
        "store": plan["store"],
        "names": plan["names"],
    }
    if gate is not None:  # the budget's gate (budget.Gate), which the task asks first
        spec["gate"] = gate
    return spec


# Named actors (node services) live in this namespace, not in an anonymous one per driver.
NAMESPACE = "mcs-pipeline"


def init_ray(address: str, num_cpus: int | None):
    import ray

    # Ship our package with the task by value: worker nodes need not have it on their path.
    ray.cloudpickle.register_pickle_by_value(sys.modules["mcs_pipeline"])
    if not ray.is_initialized():
        if address == "local":
            # address="local": a Ray of our own, never someone's cluster found via RAY_ADDRESS.
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     log_to_driver=False, namespace=NAMESPACE)
        else:
            ray.init(address=address, log_to_driver=False, namespace=NAMESPACE)
    signal.signal(signal.SIGTERM, on_term)  # ray.init installs its own handler; ours decides
    # `ray submit` runs us over ssh: a cancelled submit hangs up, and that must save the summary.
    signal.signal(signal.SIGHUP, on_term)
    return ray


# A scene whose node is lost (a spot interruption, a dead machine) runs again elsewhere without
# using up its own retries: the machine failed, not the scene. Up to this many times, so a scene
# that brings down every node it lands on still ends.
NODE_LOST_REQUEUES = 3


def failed_task_result(error: Exception, attempt: int) -> dict:
    """A task that raised instead of returning: our code failed (task_error), Ray's memory monitor
    killed it (oom), or its worker process or node went away (node_lost)."""
    import ray.exceptions as rex

    if isinstance(error, rex.OutOfMemoryError):
        failure = "oom"
    elif isinstance(error, rex.RayTaskError):
        failure = "task_error"
    else:  # WorkerCrashedError, NodeDiedError, ObjectLostError ...: the machine, not the scene
        failure = "node_lost"
    return {"attempt": attempt, "exit_code": None, "failure_class": failure, "duration_s": None,
            "node": None, "started_at": scene_task.utc_now(), "outputs": None,
            "log_excerpt": excerpt(str(error))}


# A cancelled scene stops its run script (TERM, INTERRUPT_GRACE_S, KILL) and removes its
# directory; the driver waits that long and a little more, then kills the workers still busy.
# With saving and ray.shutdown() the interruption stays within ~8 s (a GitHub cancel gives ~10).
CANCEL_WAIT_S = session.INTERRUPT_GRACE_S + 2


def cancel(ray, refs: list, force: bool) -> None:
    """ray.cancel each task; never raises (the summary is still to be saved).

    Without force, Ray (2.60) drops a queued task and raises KeyboardInterrupt in a running one
    (its worker calls _thread.interrupt_main()): run_scene stops its run script's session and
    removes its directory, and the task's ref becomes ready only once that is done. With force,
    Ray SIGKILLs the worker: no clean-up at all, so only for tasks that did not end in time.
    """
    try:
        for ref in refs:
            ray.cancel(ref, force=force)
    except Exception as error:  # e.g. the connection to the cluster is gone
        print(f"mcs-pipeline: cancelling scenes failed: {error}", flush=True)


def wait_cancelled(ray, refs: list) -> list:
    """The cancelled tasks still running after CANCEL_WAIT_S."""
    if not refs:
        return []
    try:
        _, stuck = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S, fetch_local=False)
        return stuck
    except Exception as error:
        print(f"mcs-pipeline: waiting for cancelled scenes failed: {error}", flush=True)
        return refs


class Progress:
    """One line per finished scene: counts, and an ETA from the expected cost still to run."""

    def __init__(self, summary: RunSummary, costs: dict[str, float]):
        self.summary, self.costs = summary, costs
        self.start = time.monotonic()
        self.cost_left = sum(costs[n] for n in summary.pending())
        self.cost_done = 0.0

    def line(self, name: str, result: dict, note: str = "") -> str:
        self.cost_done += self.costs[name]
        self.cost_left -= self.costs[name]
        t = self.summary.totals()
        done = t["succeeded"] + t["failed"]
        elapsed = time.monotonic() - self.start
        eta = elapsed * self.cost_left / self.cost_done if self.cost_done > 0 else 0
        status = result["failure_class"] or "SUCCESS"
        took = f"{result['duration_s']:.1f}s" if result.get("duration_s") is not None else "-"
        return (f"[{done}/{t['total']}] {status} {name} in {took} (attempt {result['attempt']}, "
                f"node {result.get('node') or '?'}){note} | ok {t['succeeded']} failed {t['failed']}"
                f" left {t['pending']} | ETA {format_seconds(eta)}")


def stop_services(ray, plan: dict, timeout_s: float) -> None:
    if plan.get("node_services"):
        n = stop_node_services(ray, plan["run_id"], timeout_s)
        print(f"mcs-pipeline: node services stopped on {n} nodes", flush=True)


def wait_finished(finished: queue.SimpleQueue, timeout_s: float | None) -> list:
    """(ref, future) of every task that finished: waits up to `timeout_s` (None: for ever) for
    the first, then takes all the others already there. [] when none finished in time.

    The wait is interruptible: a signal's handler (Ctrl-C, SIGTERM as Interrupted) raises here.
    """
    try:
        batch = [finished.get(timeout=timeout_s)]
    except queue.Empty:
        return []
    while True:
        try:
            batch.append(finished.get_nowait())
        except queue.Empty:
            return batch


def soonest(*delays: float | None) -> float | None:
    """The shortest of the delays given (None: none due)."""
    return min((d for d in delays if d is not None), default=None)


def format_seconds(seconds: float) -> str:
    s = int(round(max(seconds, 0)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def run(args: argparse.Namespace) -> int:
    plan = load_plan(Path(args.plan))
    retries = plan["retries"] if args.retries is None else args.retries
    timeout_s = plan["scene_timeout_s"] if args.scene_timeout is None else args.scene_timeout
    resume = plan["resume"] if args.resume is None else args.resume
    store = make_store(plan["store"])
    previous = find_previous(store, plan)  # through the latest-run pointer; never this run
    summary = RunSummary(plan, previous.summary if resume else None, previous_run=previous)
    costs = expected_costs(plan["scenes"], previous.summary)
    summary.set_launch_phases(read_launch_phases(Path(args.plan) / LAUNCH_PHASES))
    scenes = {s["name"]: s for s in plan["scenes"]}

    writer = SummaryWriter(store, summary, args.summary_interval, args.summary_budget)
    todo = longest_first(summary.pending(), costs)
    writer.save()
    # Only now, so the pointer never names a summary that is not there.
    store.put_bytes(plan["latest_key"], summary.pointer_bytes(previous))
    skipped = len(scenes) - len(todo)
    print(f"mcs-pipeline: {len(todo)} scenes to run"
          + (f", {skipped} already succeeded (resume)" if skipped else "")
          + f"; {previous.describe(store, resume)}"
          + f"; retries {retries}, timeout {timeout_s:.0f} s per scene; summary "
          + store.uri(plan["summary_key"]), flush=True)

    ray = None
    in_flight: dict = {}
    finished: queue.SimpleQueue = queue.SimpleQueue()
    requeued: dict[str, int] = {}  # scene -> attempts lost with their node
    budget = None
    refused: dict[str, str] = {}  # scene -> why the budget did not let it start
    try:
        if todo:
            ray = init_ray(args.ray_address, args.num_cpus)
            task = ray.remote(run_scene).options(max_retries=0, **plan["resources"])
            if plan.get("budget_usd") is not None:
                seconds = seconds_per_step(plan["scenes"], previous.summary) is not None
                budget = Budget(ray, plan, costs, seconds)
            gate = budget.gate if budget else None

            def submit(name: str, attempt: int) -> None:
                ref = task.remote(scene_spec(plan, scenes[name], attempt, timeout_s, gate))
                in_flight[ref] = (name, attempt)
                # Ray calls back (from a thread of its own) once the result is here, so a
                # finished scene costs the loop the same with 10 or 10,000 scenes in flight; a
                # ray.wait over all of them costs in proportion (~5 ms a scene at 10,000).
                ref.future().add_done_callback(lambda future: finished.put((ref, future)))

            for name in todo:
                submit(name, 1)
            progress = Progress(summary, costs)
            while in_flight:
                # Wake up for finished scenes, or when the summary (or the budget's gate) is due.
                batch = wait_finished(finished, soonest(writer.due_in(),
                                                        budget.due_in() if budget else None))
                for ref, future in batch:
                    name, attempt = in_flight.pop(ref)
                    try:
                        result = future.result()
                    except ray.exceptions.RayError as error:
                        result = failed_task_result(error, attempt)
                    if "refused" in result:
                        # Not started: the scene stays PENDING (a retry keeps its earlier
                        # attempts) for a resume to run.
                        if not refused:
                            print(f"mcs-pipeline: {result['refused']}; starting no new scene, "
                                  "letting the running ones finish", flush=True)
                        refused[name] = result["refused"]
                        continue
                    if budget:
                        budget.attempt_done(name, result)
                    failure = result["failure_class"]
                    lost = requeued.get(name, 0)
                    requeue = failure == "node_lost" and lost < NODE_LOST_REQUEUES
                    retry = requeue or (failure in RETRYABLE and attempt - lost <= retries)
                    writer.record(name, result, final=not retry)
                    if requeue:
                        requeued[name] = lost + 1
                        submit(name, attempt + 1)
                        print(f"retrying {name} after node_lost (attempt {attempt + 1}; a lost "
                              "node uses none of the scene's retries)", flush=True)
                        continue
                    if retry:
                        submit(name, attempt + 1)
                        print(f"retrying {name} after {failure} (attempt {attempt + 1} of "
                              f"{retries + 1 + lost})", flush=True)
                        continue
                    print(progress.line(name, result), flush=True)
                if budget and (batch or budget.due_in() == 0):
                    budget.update()
                writer.flush_if_due()
        stop_reason = None
        if refused:
            stop_reason = (f"{next(iter(refused.values()))}; {plural(len(refused), 'scene')} not "
                           "started (run again with resume to continue)")
        summary.finish("interrupted" if refused else "finished", stop_reason)
        if ray:
            stop_services(ray, plan, session.KILL_GRACE_S + 5)
            summary.set_nodes(cluster_nodes(plan))
        writer.save()
        if stop_reason:
            print(f"mcs-pipeline: interrupted: {stop_reason}; summary "
                  f"{store.uri(plan['summary_key'])}", flush=True)
            return 130
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as Interrupted
        # A second Ctrl-C, a forwarded SIGTERM or a hang-up must not cut the clean-up short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        refs = list(in_flight) if ray else []
        cancel(ray, refs, force=False)  # running scenes clean up while the summary is saved
        summary.finish("interrupted")
        if ray:
            summary.set_nodes(cluster_nodes(plan))
        writer.save()
        print(f"mcs-pipeline: interrupted; {len(refs)} scenes cancelled; the summary keeps "
              "what finished (re-run with --resume)", flush=True)
        stuck = wait_cancelled(ray, refs)
        if stuck:
            cancel(ray, stuck, force=True)
            print(f"mcs-pipeline: {len(stuck)} scenes did not stop within {CANCEL_WAIT_S:.0f} s; "
                  "their workers were killed", flush=True)
        if ray:
            stop_services(ray, plan, session.INTERRUPT_GRACE_S + 2)
        return 130
    except Exception:
        # Whatever failed (e.g. the connection to the cluster), what finished stays on the store.
        try:
            writer.save()
        except Exception as error:
            print(f"mcs-pipeline: saving the summary failed: {error}", flush=True)
        raise
    finally:
        if ray:
            ray.shutdown()
    t = summary.totals()
    print(f"mcs-pipeline: done: {t['succeeded']} succeeded, {t['failed']} failed of {t['total']}"
          f"; summary {store.uri(plan['summary_key'])}", flush=True)
    return 0 if t["failed"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    return run(parse_args(argv))
