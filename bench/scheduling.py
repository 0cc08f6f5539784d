#!/usr/bin/env python3
"""Scheduling efficiency of the local pipeline (run by hand: `python3 bench/scheduling.py`).

200 generated scenes (seed 7) with heavy-tailed `goal.last_step`; the demo module plays each for
last_step × PACE seconds. The whole CLI runs (`node dist/cli/index.js run`) on a local Ray with 4
slots; from the run summary we take

  scene        a scene's duration: its run script's wall time, as the summary records it
  makespan     first scene start → last scene end (attempt timestamps, ms)
  lower bound  max(Σ scene durations / slots, longest scene)
  ratio        makespan / lower bound                                        (target ≤ 1.05)
  overhead     slot time per scene the pipeline spends outside run scripts:
               (makespan × slots − Σ scene durations) / n                     (target < 50 ms)
  For context, also: the ratio against the intended play times (last_step × PACE), which
  charges the demo script's own start-up (bash + Python, contended on 2 cores) to the pipeline.

Repeated RUNS times; medians reported (the machine is shared and noisy).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scenes"))
from generate import generate  # noqa: E402


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def one_run(scenes_dir: Path, out: Path, pace: float, slots: int, steps: dict[str, int]) -> dict:
    cmd = ["node", str(ROOT / "dist/cli/index.js"), "run", "--module", "demo", "--scenes",
           str(scenes_dir), "--out", str(out), "--num-cpus", str(slots), "--retries", "0",
           "--set", f"demo_step_seconds={pace}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    summary_file = next((out / "store").rglob("*_run-summary.json"))
    summary = json.loads(summary_file.read_text())
    starts, ends, measured = [], [], []
    for scene in summary["scenes"]:
        attempt = scene["history"][-1]
        start = stamp(attempt["started_at"])
        starts.append(start)
        ends.append(start + attempt["duration_s"])
        measured.append(attempt["duration_s"])
    intended = [steps[s["name"]] * pace for s in summary["scenes"]]
    makespan = max(ends) - min(starts)
    bound = max(sum(measured) / slots, max(measured))
    return {
        "makespan_s": makespan,
        "lower_bound_s": bound,
        "ratio": makespan / bound,
        "overhead_ms": (makespan * slots - sum(measured)) / len(measured) * 1000,
        "ratio_vs_intended": makespan / max(sum(intended) / slots, max(intended)),
        "script_startup_ms": statistics.median(m - i for m, i in zip(measured, intended)) * 1000,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--pace", type=float, default=0.01, help="seconds per scene step")
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcs-bench-") as tmp:
        scenes_dir = Path(tmp) / "scenes"
        steps = {s["name"]: s["last_step"] for s in generate(args.count, str(scenes_dir), seed=7)}
        print(f"{args.count} scenes, Σ last_step {sum(steps.values())}, max {max(steps.values())}, "
              f"pace {args.pace * 1000:.0f} ms/step, {args.slots} slots", flush=True)
        results = []
        for i in range(args.runs):
            r = one_run(scenes_dir, Path(tmp) / f"out{i}", args.pace, args.slots, steps)
            results.append(r)
            print("run {}: makespan {makespan_s:.2f} s, bound {lower_bound_s:.2f} s, ratio "
                  "{ratio:.3f}, overhead {overhead_ms:.1f} ms/scene; vs intended play time: ratio "
                  "{ratio_vs_intended:.3f}, script start-up {script_startup_ms:.0f} ms"
                  .format(i + 1, **r), flush=True)
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print("median of {n}: ratio {ratio:.3f} (target <= 1.05), overhead {overhead_ms:.1f} ms per "
          "scene (target < 50 ms), makespan {makespan_s:.2f} s; vs intended play time: ratio "
          "{ratio_vs_intended:.3f}, demo script start-up {script_startup_ms:.0f} ms"
          .format(n=len(results), **med))


if __name__ == "__main__":
    main()
