#!/usr/bin/env python3
"""What the driver's summary costs per finished scene (run by hand: `python3 bench/summary_writes.py`).

N trivial scenes (a run script that writes an empty scene history and exits at once) run through
the real driver (`pipeline/mcs_pipeline/driver.py`, `--ray-address local`, its own Ray) with a
local results store. The driver runs in a child process whose store counts what it writes:

  summary      bytes the driver wrote to the store for the run summary, per finished scene: the
               summary file itself (every rewrite), its journal chunks (if the driver keeps any)
               and the latest-run pointer                                     (target <= 10 KB)
  outputs      bytes the scenes' tasks wrote (histories, logs), per scene, for comparison
  driver cpu   CPU time of the driver's main thread per scene: everything it does (the summary,
               progress lines, ray.wait, ray.get, submitting), blocked time excluded; without
               ray.init and ray.shutdown                                          (target <= 5 ms)
  process cpu  the same for the whole driver process (Ray's own threads in it too)
  outside wait wall time of the run outside the driver's waits for finished scenes (ray.wait,
               or wait_finished), per scene

`--pipeline DIR` runs another copy of `pipeline/` (e.g. the last commit's, for a before/after:
`git archive HEAD pipeline | tar -x -C /tmp/before`). `--profile` prints the driver's cProfile.
Repeated `--runs` times per size; medians reported (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = "bench-summary-writes"
RUN_SCRIPT = """#!/bin/sh
# A scene that is over at once: an (empty) scene history where MCS leaves it, and exit 0.
mkdir -p "$3/SCENE_HISTORY" && echo '{}' > "$3/SCENE_HISTORY/$MCS_SCENE_NAME.json"
"""


def make_plan(root: Path, count: int) -> Path:
    """A plan directory as src/plan.ts writes it (the fields the driver reads), `count` scenes."""
    plan_dir = root / "plan"
    (plan_dir / "scenes").mkdir(parents=True)
    (plan_dir / "configs").mkdir()
    (plan_dir / "deploy").mkdir()
    shutil.copy(ROOT / "configs" / "mcs_config_demo_level2.ini",
                plan_dir / "configs" / "mcs_config.ini")
    script = plan_dir / "deploy" / "ray_script.sh"
    script.write_text(RUN_SCRIPT)
    script.chmod(0o755)
    folder, prefix = "demo-eval", "demo-eval_level2_demo"
    scenes = []
    for i in range(count):
        name = f"bench_{i:05d}"
        steps = 1 + i % 50  # varied expected costs, as real runs have
        (plan_dir / "scenes" / f"{name}.json").write_text(json.dumps(
            {"name": name, "version": "2",
             "goal": {"category": "retrieval", "last_step": steps, "action_list": []}}))
        scenes.append({"name": name, "file": f"scenes/{name}.json", "expected_cost": steps,
                       "category": "retrieval"})
    plan = {
        "schema_version": 1, "run_id": RUN_ID, "module": "demo", "metadata": "level2",
        "target": "local", "cluster_name": None, "ray_version": "2.60.0",
        "store": str(root / "store"),
        "summary_key": f"{folder}/{prefix}_{RUN_ID}_run-summary.json",
        "latest_key": f"{folder}/{prefix}_latest-run.json",
        "legacy_summary_key": f"{folder}/{prefix}_run-summary.json",
        "names": {"folder": folder, "movies_folder": "demo-eval-movies", "prefix": prefix},
        "retries": 0, "scene_timeout_s": 60, "resume": False,
        "resources": {"num_cpus": 1, "num_gpus": 0},
        "run_script": "deploy/ray_script.sh", "eval_dir": None, "history_required": True,
        "mcs_config": "configs/mcs_config.ini", "scenes": scenes,
    }
    (plan_dir / "plan.json").write_text(json.dumps(plan, indent=1))
    return plan_dir


# -- the child: one driver run, instrumented --------------------------------------------------
def child(pipeline: Path, plan_dir: Path, num_cpus: int, stats_path: Path, profile: bool) -> None:
    sys.path.insert(0, str(pipeline))
    import ray
    from mcs_pipeline import driver
    from mcs_pipeline.store import LocalStore

    plan = json.loads((plan_dir / "plan.json").read_text())
    writes: dict[str, list] = {"summary": [0, 0, 0.0], "pointer": [0, 0, 0.0],
                               "journal": [0, 0, 0.0]}  # count, bytes, seconds

    class CountingStore(LocalStore):
        def put_bytes(self, key: str, data: bytes) -> None:
            kind = ("summary" if key == plan["summary_key"] else
                    "pointer" if key == plan["latest_key"] else "journal")
            t0 = time.perf_counter()
            super().put_bytes(key, data)
            w = writes[kind]
            w[0] += 1
            w[1] += len(data)
            w[2] += time.perf_counter() - t0

    excluded = {"thread": 0.0, "process": 0.0, "wall": 0.0}
    waited = [0.0, 0]

    def excluding(fn):
        def wrapper(*args, **kwargs):
            t, p, w = time.thread_time(), time.process_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                excluded["thread"] += time.thread_time() - t
                excluded["process"] += time.process_time() - p
                excluded["wall"] += time.perf_counter() - w
        return wrapper

    def timed(wait):
        def timed_wait(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return wait(*args, **kwargs)
            finally:
                waited[0] += time.perf_counter() - t0
                waited[1] += 1
        return timed_wait

    driver.make_store = CountingStore
    driver.init_ray = excluding(driver.init_ray)
    ray.shutdown = excluding(ray.shutdown)
    # Where the driver blocks for finished scenes: ray.wait (the driver before the journal),
    # or its own wait_finished.
    if hasattr(driver, "wait_finished"):
        driver.wait_finished = timed(driver.wait_finished)
    else:
        ray.wait = timed(ray.wait)
    args = driver.parse_args(["--plan", str(plan_dir), "--ray-address", "local",
                              "--num-cpus", str(num_cpus)])
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    t, p, w = time.thread_time(), time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    code = driver.run(args)
    if profiler:
        profiler.disable()
    t, p, w = time.thread_time() - t, time.process_time() - p, time.perf_counter() - w
    stats = {"exit_code": code, "writes": writes, "waited_s": waited[0], "waits": waited[1],
             "thread_s": t - excluded["thread"], "process_s": p - excluded["process"],
             "wall_s": w - excluded["wall"]}
    stats_path.write_text(json.dumps(stats))
    if profiler:
        import pstats

        for order in ("tottime", "cumulative"):
            print(f"--- driver main thread, by {order}")
            pstats.Stats(profiler).sort_stats(order).print_stats(30)


# -- the parent: plans, runs, medians ---------------------------------------------------------
def one_run(args, plan_dir: Path, count: int) -> dict:
    store = Path(json.loads((plan_dir / "plan.json").read_text())["store"])
    shutil.rmtree(store, ignore_errors=True)
    stats_path = plan_dir.parent / "stats.json"
    cmd = [sys.executable, __file__, "--child", "--pipeline", str(args.pipeline), "--plan",
           str(plan_dir), "--num-cpus", str(args.num_cpus), "--stats", str(stats_path)]
    if args.profile:
        cmd.append("--profile")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not stats_path.exists():
        sys.exit(f"driver run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                 f"{proc.stderr[-3000:]}")
    if args.profile:
        profile = proc.stdout[proc.stdout.find("--- driver main thread"):]
        print(profile, flush=True)
    stats = json.loads(stats_path.read_text())
    summary_file = next(store.rglob("*_run-summary.json"))
    summary = json.loads(summary_file.read_text())
    assert summary["state"] == "finished" and summary["totals"]["succeeded"] == count, \
        summary["totals"]
    outputs = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()
                  and "_run-summary" not in p.name and "run-summary.journal" not in str(p)
                  and not p.name.endswith("_latest-run.json"))
    w = stats["writes"]
    summary_bytes = sum(v[1] for v in w.values())
    return {
        "summary_kb": summary_bytes / count / 1000,
        "summary_file_kb": w["summary"][1] / count / 1000,
        "journal_kb": w["journal"][1] / count / 1000,
        "summary_writes": w["summary"][0],
        "journal_writes": w["journal"][0],
        "write_ms": sum(v[2] for v in w.values()) / count * 1000,
        "outputs_b": outputs / count,
        "driver_cpu_ms": stats["thread_s"] / count * 1000,
        "process_cpu_ms": stats["process_s"] / count * 1000,
        "outside_wait_ms": (stats["wall_s"] - stats["waited_s"]) / count * 1000,
        "wall_s": stats["wall_s"],
        "final_summary_kb": summary_file.stat().st_size / 1000,
    }


def report(prefix: str, r: dict) -> str:
    return ("{p}: summary {summary_kb:.2f} KB/scene (file {summary_file_kb:.2f}, journal "
            "{journal_kb:.2f}; {summary_writes:.0f} file + {journal_writes:.0f} journal writes, "
            "{write_ms:.2f} ms/scene in store writes), outputs {outputs_b:.0f} B/scene | driver "
            "cpu {driver_cpu_ms:.2f} ms/scene, process cpu {process_cpu_ms:.2f}, outside wait "
            "{outside_wait_ms:.2f} | run {wall_s:.1f} s, final summary {final_summary_kb:.0f} KB"
            .format(p=prefix, **r))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--runs", type=int, default=3, help="runs per size (median reported)")
    p.add_argument("--num-cpus", type=int, default=4, help="Ray slots (the scenes mostly sleep)")
    p.add_argument("--pipeline", type=Path, default=ROOT / "pipeline",
                   help="the pipeline/ directory to run (default: this checkout's)")
    p.add_argument("--profile", action="store_true", help="print the driver's cProfile")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.pipeline.resolve(), args.plan, args.num_cpus, args.stats, args.profile)
        return
    args.pipeline = args.pipeline.resolve()
    print(f"driver from {args.pipeline}; {args.num_cpus} Ray slots; {os.cpu_count()} cores",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="mcs-bench-") as tmp:
        for count in args.sizes:
            root = Path(tmp) / str(count)
            plan_dir = make_plan(root, count)
            results = []
            for i in range(args.runs):
                r = one_run(args, plan_dir, count)
                results.append(r)
                print(report(f"{count} scenes, run {i + 1}", r), flush=True)
            med = {k: statistics.median(r[k] for r in results) for k in results[0]}
            print(report(f"{count} scenes, median of {len(results)}", med), flush=True)


if __name__ == "__main__":
    main()
