"""Which scene starts first: longest expected first, so a long scene does not start last.

Expected cost is the previous run's duration where the store has one; else `goal.last_step`
converted to seconds by the median seconds-per-step the previous run showed (the scale does not
matter when there is no previous run: only the order does).
"""

from __future__ import annotations

from statistics import median


def expected_costs(scenes: list[dict], previous: dict | None) -> dict[str, float]:
    steps = {s["name"]: float(s["expected_cost"]) for s in scenes}
    durations = {s["name"]: s["duration_s"] for s in (previous or {}).get("scenes", [])
                 if s.get("duration_s") and s["name"] in steps}
    rates = [durations[n] / steps[n] for n in durations if steps[n] > 0]
    seconds_per_step = median(rates) if rates else 1.0
    return {name: durations.get(name, cost * seconds_per_step) for name, cost in steps.items()}


def longest_first(names: list[str], costs: dict[str, float]) -> list[str]:
    return sorted(names, key=lambda n: (-costs[n], n))
