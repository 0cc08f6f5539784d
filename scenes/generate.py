#!/usr/bin/env python3
"""Generate synthetic MCS scene files (format version "2") for load tests and benchmarks.

    python3 scenes/generate.py --count N --out DIR [--seed S] [--min-steps A]
                               [--max-steps B] [--prefix P]

Real evaluations mix many short passive scenes with a few very long interactive ones, so a
scheduler that looks fine on uniform scenes can still leave one node running a straggler for
most of the run. To reproduce that, each scene's `goal.last_step` is heavy-tailed:
floor(min_steps * Pareto(alpha=1.5)), capped at max_steps. The Pareto draws come, one per scene
and in order, from their own random.Random(seed), so anyone can recompute the step counts from
the seed alone; object layouts use a second generator and never shift that sequence.

Categories are cycled in CATEGORIES order. Passive ones (intuitive physics, agents) get an
action_list of last_step ["Pass"] entries, interactive ones an empty action_list (the performer
chooses its actions). Same arguments, same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from pathlib import Path

PARETO_ALPHA = 1.5
PASSIVE = ("intuitive physics", "agents")
CATEGORIES = (
    "intuitive physics",
    "retrieval",
    "agents",
    "multi retrieval",
    "container",
    "obstacle",
    "occluder",
)

CEILINGS = ("AI2-THOR/Materials/Walls/Drywall", "AI2-THOR/Materials/Walls/DrywallBeige")
FLOORS = (
    "AI2-THOR/Materials/Fabrics/CarpetWhite 3",
    "AI2-THOR/Materials/Wood/DarkWoodSmooth2",
    "AI2-THOR/Materials/Wood/WoodFloorsCross",
)
WALLS = ("AI2-THOR/Materials/Walls/DrywallGreen", "AI2-THOR/Materials/Walls/EggshellDrywall")
COLOURS = ("Custom/Materials/Red", "Custom/Materials/Blue", "Custom/Materials/Yellow",
           "Custom/Materials/Green")
TARGETS = ("soccer_ball", "crayon_blue", "turtle_on_wheels", "racecar_red")


def vec(x: float, y: float, z: float) -> dict:
    return {"x": round(x, 3), "y": round(y, 3), "z": round(z, 3)}


def make_object(id_: str, type_: str, mass: float, materials: list, position: dict,
                scale: float | dict = 1.0, rotation_y: float = 0, step_begin: int = 0,
                **extra) -> dict:
    """One object with a single `shows` entry; extra keys (forces, moves, flags) pass through."""
    if not isinstance(scale, dict):
        scale = vec(scale, scale, scale)
    show = {"stepBegin": step_begin, "position": position,
            "rotation": {"x": 0, "y": rotation_y, "z": 0}, "scale": scale}
    return {"id": id_, "type": type_, "mass": mass, "materials": materials,
            "shows": [show], **extra}


def scene_json(scene: dict) -> str:
    """Pretty-print a scene compactly: anything that fits on a line (vectors, flags, small
    objects) stays on one line, and action lists are packed 10 entries a line.

    With plain json.dumps(indent=2) a vector takes 5 lines and a 5000-step passive scene
    15000 lines of `[`, `"Pass"`, `]`.
    """
    return _render(scene, 0) + "\n"


def _render(value, indent: int) -> str:
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, (dict, list)) or not value or indent + len(flat) <= 96:
        return flat
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_render(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if all(isinstance(v, list) and all(isinstance(a, str) for a in v) for v in value):
        # An action list: rows of 10 steps, which also makes step numbers easy to count.
        rows = [", ".join(json.dumps(a) for a in value[i:i + 10])
                for i in range(0, len(value), 10)]
        return "[\n" + ",\n".join(inner + row for row in rows) + f"\n{pad}]"
    return "[\n" + ",\n".join(inner + _render(v, indent + 2) for v in value) + f"\n{pad}]"


def build_scene(name: str, category: str, last_step: int, rng: random.Random) -> dict:
    """A plausible scene of `category`; object details only need to look like MCS data."""
    new_id = lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4))  # noqa: E731
    colour = lambda: [rng.choice(COLOURS)]  # noqa: E731
    passive = category in PASSIVE
    scene = {
        "name": name,
        "version": "2",
        "ceilingMaterial": rng.choice(CEILINGS),
        "floorMaterial": rng.choice(FLOORS),
        "wallMaterial": rng.choice(WALLS),
        "performerStart": {"position": vec(0, 0, -4.5), "rotation": {"x": 0, "y": 0}},
        "objects": [],
    }
    objects = scene["objects"]
    metadata: dict = {}

    if category == "intuitive physics":
        # A ball enters from the side, pushed once, and rolls behind a wall that is raised at
        # the start so the performer sees what is (not) behind it.
        enter = rng.randint(1, max(1, last_step // 3))
        side = rng.choice((-1, 1))
        objects.append(make_object(
            new_id(), "sphere", 0.5, colour(), vec(4.2 * side, 0.25, rng.uniform(1, 3)),
            scale=0.5, step_begin=enter, physics=True,
            forces=[{"stepBegin": enter, "stepEnd": enter, "vector": vec(-250 * side, 0, 0)}]))
        objects.append(make_object(
            "occluder_wall_" + new_id(), "cube", 100, colour(), vec(rng.uniform(-1, 1), 0.75, 1),
            scale=vec(rng.uniform(1, 2), 1.5, 0.1), kinematic=True, structure=True,
            moves=[{"stepBegin": 1, "stepEnd": 6, "vector": vec(0, 0.25, 0)},
                   {"stepBegin": 7, "stepEnd": 12, "vector": vec(0, -0.25, 0)}]))
    elif category == "agents":
        # An agent walks from one side towards one of two goal objects.
        agent = make_object(new_id(), "cube", 1, colour(), vec(-2, 0.25, 1), scale=0.3,
                            moves=[{"stepBegin": 5, "stepEnd": max(6, last_step - 5),
                                    "vector": vec(0.02, 0, 0)}])
        objects.append(agent)
        for x in (1.5, 2.5):
            objects.append(make_object(new_id(), rng.choice(("sphere", "cone")), 0.5, colour(),
                                       vec(x, 0.25, 1), scale=0.3))
    else:
        # Interactive: a room, the performer somewhere in it, one or more targets.
        width, depth = rng.choice((8, 10, 12)), rng.choice((8, 10, 12))
        scene["roomDimensions"] = {"x": width, "y": 3, "z": depth}
        scene["performerStart"] = {
            "position": vec(rng.uniform(-2, 2), 0, -depth / 2 + 1),
            "rotation": {"x": 0, "y": rng.choice((0, 90, 180, 270))},
        }
        place = lambda: vec(rng.uniform(-width / 2 + 1, width / 2 - 1), 0,  # noqa: E731
                            rng.uniform(0, depth / 2 - 1))
        n_targets = rng.randint(2, 4) if category == "multi retrieval" else 1
        targets = [make_object(new_id(), rng.choice(TARGETS), 0.5, [], place(),
                               moveable=True, pickupable=True) for _ in range(n_targets)]
        if category == "container":
            # The target starts inside a closed chest: the performer has to open it.
            chest = make_object(new_id(), "chest_1", 5, ["AI2-THOR/Materials/Wood/WoodGrain_Brown"],
                                targets[0]["shows"][0]["position"], scale=0.8,
                                moveable=True, openable=True, opened=False)
            targets[0]["locationParent"] = chest["id"]
            objects.append(chest)
        elif category in ("obstacle", "occluder"):
            # A wide wall between performer and target: walk around it (obstacle) or look
            # behind it (occluder).
            tz = targets[0]["shows"][0]["position"]["z"]
            objects.append(make_object(
                f"{category}_wall_" + new_id(), "cube", 100, colour(), vec(0, 0.75, tz - 1),
                scale=vec(3, 1.5 if category == "obstacle" else 2.5, 0.1),
                kinematic=True, structure=True))
        objects[:0] = targets
        if category == "multi retrieval":
            metadata["targets"] = [{"id": t["id"]} for t in targets]
        else:
            metadata["target"] = {"id": targets[0]["id"]}

    description = {
        "intuitive physics": "Watch the ball and the wall; is what you see plausible?",
        "agents": "Watch the agent; does it act as expected?",
        "retrieval": "Find and pick up the target object.",
        "multi retrieval": "Find and pick up all of the target objects.",
        "container": "Open the container and pick up the target object inside.",
        "obstacle": "Go around the obstacle and pick up the target object.",
        "occluder": "Look behind the occluder and pick up the target object.",
    }[category]
    scene["goal"] = {
        "category": category,
        "description": description,
        "last_step": last_step,
        "metadata": metadata,
        "action_list": [["Pass"]] * last_step if passive else [],
    }
    if category == "intuitive physics":
        scene["intuitivePhysics"] = True
    return scene


def generate(count: int, out_dir, seed: int = 7, min_steps: int = 50, max_steps: int = 5000,
             prefix: str = "gen") -> list[dict]:
    """Write `count` scenes to out_dir; return [{"name", "last_step", "file"}] in order."""
    if count < 0 or min_steps < 1 or max_steps < min_steps:
        raise ValueError("need count >= 0 and 1 <= min_steps <= max_steps")
    steps_rng = random.Random(seed)
    layout_rng = random.Random(f"layout-{seed}")  # str seeds are hashed deterministically
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(count):
        last_step = min(max_steps, int(min_steps * steps_rng.paretovariate(PARETO_ALPHA)))
        name = f"{prefix}_{i:05d}"
        scene = build_scene(name, CATEGORIES[i % len(CATEGORIES)], last_step, layout_rng)
        path = out / f"{name}.json"
        path.write_text(scene_json(scene), encoding="utf-8")
        written.append({"name": name, "last_step": last_step, "file": str(path)})
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, required=True, help="number of scenes")
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--min-steps", type=int, default=50, help="Pareto scale (minimum)")
    parser.add_argument("--max-steps", type=int, default=5000, help="cap on last_step")
    parser.add_argument("--prefix", default="gen", help="scene name prefix")
    args = parser.parse_args(argv)
    try:
        scenes = generate(args.count, args.out, args.seed, args.min_steps, args.max_steps,
                          args.prefix)
    except ValueError as err:
        parser.error(str(err))
    steps = [s["last_step"] for s in scenes]
    print(f"wrote {len(scenes)} scenes to {args.out}: "
          f"last_step sum {sum(steps)}, max {max(steps, default=0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
