"""Which scene starts first: longest expected first, so a long scene does not start last.

Expected cost is the previous run's duration where the store has one; else `goal.last_step`
converted to seconds by the median seconds-per-step the previous run showed (the scale does not
matter when there is no previous run: only the order does).
"""

from __future__ import annotations

from statistics import median


def previous_durations(scenes: list[dict], previous: dict | None) -> dict[str, float]:
    names = {s["name"] for s in scenes}
    return {s["name"]: s["duration_s"] for s in (previous or {}).get("scenes", [])
            if s.get("duration_s") and s["name"] in names}


def seconds_per_step(scenes: list[dict], previous: dict | None) -> float | None:
    """The median the previous run showed; None when it showed none (expected_costs are then
    steps, not seconds)."""
    steps = {s["name"]: float(s["expected_cost"]) for s in scenes}
    durations = previous_durations(scenes, previous)
    rates = [durations[n] / steps[n] for n in durations if steps[n] > 0]
    return median(rates) if rates else None


def expected_costs(scenes: list[dict], previous: dict | None) -> dict[str, float]:
    durations = previous_durations(scenes, previous)
    rate = seconds_per_step(scenes, previous) or 1.0
    return {s["name"]: durations.get(s["name"], float(s["expected_cost"]) * rate)
            for s in scenes}


def longest_first(names: list[str], costs: dict[str, float]) -> list[str]:
    return sorted(names, key=lambda n: (-costs[n], n))
