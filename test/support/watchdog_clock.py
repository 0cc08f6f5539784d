"""The head's watchdog (pipeline/watchdog.py) on a simulated clock, as a rendered cluster YAML
starts it: test/janitor.test.ts runs it beside the janitor over the same cluster.

  watchdog_clock.py CLUSTER_YAML PLAN_DIR STARTED OUT

Reads the watchdog's command line from the YAML's head_start_ray_commands (what `ray up` runs
on the head) and parses it with the watchdog's own parser; then runs its real watch loop from
STARTED (epoch seconds: when `ray up` started it) with a clock that advances by each poll, a
driver running all along (a run handed over by `follow-minutes`: its supervisor is this
process), nobody following and Ray up. When the watchdog decides to tear the cluster down, the
time and its log go to OUT (JSON) instead: the caller runs its `ray down`.
"""

import dataclasses
import json
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pipeline"))
import attach  # noqa: E402
import watchdog  # noqa: E402


def main() -> None:
    import yaml

    config_file, plan_dir, started, out_file = sys.argv[1:5]
    with open(config_file) as f:
        command = shlex.split(yaml.safe_load(f)["head_start_ray_commands"][-1])
    script = next(i for i, word in enumerate(command) if word.endswith("/watchdog.py"))
    args = command[script + 1:command.index(">>")]  # then the log's redirection and `&`
    settings = dataclasses.replace(watchdog.parse(args), plan_dir=Path(plan_dir))

    files = attach.Files(settings.plan_dir)
    files.started.parent.mkdir(parents=True, exist_ok=True)
    files.started.write_text(f"{os.getpid()}\n")

    now = [float(started)]
    acted: list[float] = []
    lines: list[str] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    watchdog.watch(settings, float(started), clock=lambda: now[0], sleep=sleep,
                   ray_running=lambda: True, act=lambda *_: acted.append(now[0]),
                   log=lines.append)
    with open(out_file, "w") as f:
        json.dump({"max_minutes": settings.max_minutes, "acted_at": acted[0], "log": lines}, f)


if __name__ == "__main__":
    main()
