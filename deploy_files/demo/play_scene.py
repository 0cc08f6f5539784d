#!/usr/bin/env python3
"""Demo performer: "plays" an MCS scene without a GPU or the MCS simulator.

    play_scene.py MCS_CONFIG SCENE_FILE EVAL_DIR

It exists so the whole pipeline (cluster, scheduling, retries, uploads, reports) can be
exercised anywhere. It takes the scene's actions (goal.action_list, first action of each
entry) or, for interactive scenes with an empty list, goal.last_step actions from a fixed
cycle; paces them at `demo_step_seconds` per step; and writes an MCS-style scene history to
EVAL_DIR/SCENE_HISTORY/<scene name>-<YYYYMMDD-HHMMSS>.json (MCS's name for it, local time) when
`history_enabled` is true. It writes no videos.

MCS config ([MCS] section): metadata, team, evaluation_name, history_enabled (default true),
demo_step_seconds (default 0.002).

Fault injection, so tests can provoke each failure class the driver knows: an optional
top-level scene key "demo" holding an object with any of
  {"xserver_fail_attempts": K}  if env MCS_ATTEMPT (default 1) <= K: print the X server's
                                "(EE) Server terminated with error (1). X server failed to
                                start" on stderr and exit 1 before playing (retryable).
  {"exit_code": N}              print an error line on stderr, exit N after the first step.
  {"oom": true}                 print "MemoryError: out of memory" on stderr, exit 137 after
                                the first step (what the kernel's OOM kill looks like).
  {"hang": true}                sleep forever after the first step (for timeouts).
  {"lose_node_attempts": K}     if MCS_ATTEMPT <= K: SIGKILL the process that started the run
                                script (the Ray worker running the task), which is how a lost
                                node or spot interruption looks to the driver (node_lost).
  {"skip_history": true}        play normally but write no history (missing outputs).
Bad arguments (missing or unreadable file, invalid JSON or config) exit 2 with one line on
stderr.
"""

from __future__ import annotations

import argparse
import configparser
import json
import math
import os
import signal
import sys
import time
import zlib
from datetime import datetime
from pathlib import Path

PASSIVE = ("intuitive physics", "agents")
# What an interactive demo "performer" does when the scene has no action_list: explore a bit,
# then try to pick something up. Fixed so reruns give identical histories.
DEFAULT_CYCLE = ("MoveAhead", "RotateLeft", "MoveAhead", "Pass", "PickupObject",
                 "MoveAhead", "RotateRight", "LookDown", "OpenObject", "LookUp")
STEP_METRES, ROTATE_DEGREES = 0.1, 10


class BadInput(Exception):
    """A problem with the arguments: reported as one line, exit 2."""


def log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def fail(message: str, code: int) -> None:
    print(f"[demo] ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def read_config(path: str) -> dict:
    parser = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
        mcs = parser["MCS"]
        return {
            "metadata": mcs.get("metadata", ""),
            "team": mcs.get("team", ""),
            "evaluation_name": mcs.get("evaluation_name", ""),
            "history_enabled": mcs.getboolean("history_enabled", fallback=True),
            "pace": mcs.getfloat("demo_step_seconds", fallback=0.002),
        }
    except OSError as err:
        raise BadInput(f"cannot read MCS config {path}: {err.strerror}") from err
    except KeyError as err:
        raise BadInput(f"MCS config {path} has no [MCS] section") from err
    except (configparser.Error, ValueError) as err:
        raise BadInput(f"invalid MCS config {path}: {' '.join(str(err).split())}") from err


def read_scene(path: str) -> dict:
    try:
        scene = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise BadInput(f"cannot read scene file {path}: {err.strerror}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadInput(f"scene file {path} is not valid JSON: {err}") from err
    goal = scene.get("goal") if isinstance(scene, dict) else None
    if not isinstance(goal, dict):
        raise BadInput(f"scene file {path} has no goal object")
    demo = scene.get("demo", {})
    if not isinstance(demo, dict) or not all(
            isinstance(demo.get(k, 0), int)
            for k in ("exit_code", "xserver_fail_attempts", "lose_node_attempts")):
        raise BadInput(f"scene file {path}: 'demo' must be an object with integer codes")
    scene.setdefault("name", Path(path).stem)
    # The name becomes the history's file name: keep it inside SCENE_HISTORY.
    if not isinstance(scene["name"], str) or not scene["name"] or "/" in scene["name"]:
        raise BadInput(f"scene file {path}: 'name' must be a plain non-empty string")
    return scene


def scene_actions(goal: dict) -> list[str]:
    """goal.action_list (first action of each entry) if given, else the default cycle."""
    action_list = goal.get("action_list") or []
    if action_list:
        return [entry[0] if isinstance(entry, list) and entry else str(entry)
                for entry in action_list]
    last_step = goal.get("last_step")
    if not isinstance(last_step, int) or last_step < 0:
        raise BadInput("scene goal needs an action_list or a non-negative integer last_step")
    return [DEFAULT_CYCLE[i % len(DEFAULT_CYCLE)] for i in range(last_step)]


def play(scene: dict, config: dict, actions: list[str]) -> list[dict]:
    """Step through the actions at the configured pace; return the history steps."""
    demo = scene.get("demo", {})
    passive = is_passive(scene)
    start = scene.get("performerStart", {})
    pos = dict(start.get("position", {"x": 0, "y": 0, "z": 0}))
    heading = float(start.get("rotation", {}).get("y", 0))
    pace, total = config["pace"], len(actions)
    every = max(1, total // 10)
    steps = []
    began = time.monotonic()
    for i, action in enumerate(actions, start=1):
        # Sleep to a running deadline rather than `pace` each step, so time spent working
        # doesn't accumulate: total time ~= steps * pace.
        delay = began + i * pace - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if action == "MoveAhead":
            pos["x"] = round(pos.get("x", 0) + STEP_METRES * math.sin(math.radians(heading)), 3)
            pos["z"] = round(pos.get("z", 0) + STEP_METRES * math.cos(math.radians(heading)), 3)
        elif action in ("RotateLeft", "RotateRight"):
            turn = ROTATE_DEGREES if action == "RotateRight" else -ROTATE_DEGREES
            heading = (heading + turn) % 360
        steps.append({
            "step": i,
            "action": action,
            "args": {},
            "output": {
                "return_status": "SUCCESSFUL",
                # MCS charges interactive scenes a small step penalty; passive ones none.
                "reward": 0.0 if passive else -0.001,
                "position": dict(pos),
            },
        })
        if i == 1:
            inject_after_first_step(demo)
        if i % every == 0 and i < total:
            log(f"step {i}/{total} ({100 * i // total}%)")
    return steps


def inject_after_first_step(demo: dict) -> None:
    if "exit_code" in demo:
        fail(f"injected failure: exiting with code {demo['exit_code']}", int(demo["exit_code"]))
    if demo.get("oom"):
        print("MemoryError: out of memory", file=sys.stderr, flush=True)
        sys.exit(137)
    if demo.get("hang"):
        log("injected hang: sleeping until killed")
        while True:
            time.sleep(3600)


def is_passive(scene: dict) -> bool:
    return bool(scene.get("intuitivePhysics")) or scene["goal"].get("category") in PASSIVE


def score(scene: dict) -> dict:
    """A deterministic answer: passive scenes get a plausibility rating, interactive none."""
    if not is_passive(scene):
        return {"classification": None, "confidence": 1.0}
    digest = zlib.crc32(scene["name"].encode("utf-8"))
    return {"classification": "plausible" if digest % 2 else "implausible",
            "confidence": round(0.5 + (digest % 500) / 1000, 3)}


def write_history(eval_dir: str, scene: dict, config: dict, steps: list[dict]) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")  # as MCS stamps it: the node's local time
    history = {
        "info": {
            "name": scene["name"],
            "metadata": config["metadata"],
            "team": config["team"],
            "evaluation_name": config["evaluation_name"],
            "timestamp": stamp,
        },
        "steps": steps,
        "score": score(scene),
    }
    folder = Path(eval_dir) / "SCENE_HISTORY"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{scene['name']}-{stamp}.json"
    # Write then rename, so an uploader never sees a half-written history.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Play an MCS scene without a simulator.")
    parser.add_argument("mcs_config")
    parser.add_argument("scene_file")
    parser.add_argument("eval_dir")
    args = parser.parse_args(argv)
    try:
        config = read_config(args.mcs_config)
        scene = read_scene(args.scene_file)
        actions = scene_actions(scene["goal"])
        attempt = int(os.environ.get("MCS_ATTEMPT", "1"))
    except BadInput as err:
        fail(str(err), 2)
    except ValueError:
        fail(f"MCS_ATTEMPT must be an integer, got {os.environ['MCS_ATTEMPT']!r}", 2)

    demo = scene.get("demo", {})
    if attempt <= int(demo.get("lose_node_attempts", 0)):
        log("injected node loss: killing the Ray worker that runs this scene")
        os.kill(os.getppid(), signal.SIGKILL)
        return 1
    if attempt <= int(demo.get("xserver_fail_attempts", 0)):
        print("(EE) Server terminated with error (1). X server failed to start",
              file=sys.stderr, flush=True)
        return 1

    name, category = scene["name"], scene["goal"].get("category", "?")
    log(f"scene {name} ({category}): {len(actions)} steps at {config['pace']}s/step, "
        f"attempt {attempt}")
    began = time.monotonic()
    steps = play(scene, config, actions)
    if config["history_enabled"] and not demo.get("skip_history"):
        where = f"history {write_history(args.eval_dir, scene, config, steps)}"
    else:
        where = "no history written"
    log(f"scene {name} done: {len(steps)} steps in {time.monotonic() - began:.2f}s, {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
