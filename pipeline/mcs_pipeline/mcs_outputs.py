"""Where MCS 0.7.4 leaves a scene's outputs, which of them this attempt made, and their keys.

MCS names everything after the scene file's JSON `name`, relative to the performer's working
directory (the eval dir), each in its own way (read in the wheel, DESIGN §4):
- history (HistoryWriter): `SCENE_HISTORY/<name without ".json">-<YYYYMMDD-HHMMSS>.json`, written
  whole at end_scene (or by its atexit handler, score -1, after a crash);
- videos (controller_media.get_basename): `<name>/<evaluation_name>_<metadata>_<team>_
  <name with "json" removed>_<visual|depth|segmentation|topdown>_<YYYYMMDD-HHMMSS>.mp4`, the same
  timestamp as the history's.
MCS clears a scene's video folder only at start_scene, and team scripts clear SCENE_HISTORY/ only
once they get that far: only files written since the attempt started count, and of the videos
only those with the history's timestamp (as the original pipeline kept them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

STAMP = r"\d{8}-\d{6}"
VIDEO_TYPES = ("visual", "depth", "segmentation", "topdown")
VIDEO = re.compile(rf"_({'|'.join(VIDEO_TYPES)})_({STAMP})\.mp4$")
# The kernel stamps files from a clock a tick coarser than time.time(): a file written just after
# the attempt started may carry a slightly earlier mtime.
MTIME_SLACK_NS = 50_000_000


def mcs_name(scene_text: str, fallback: str) -> str:
    """The scene's JSON `name` (what MCS names its outputs after), else the pipeline's name."""
    try:
        name = json.loads(scene_text).get("name")
    except (ValueError, AttributeError):
        return fallback
    return name if isinstance(name, str) and name.strip() else fallback


def key_name(name: str) -> str:
    """The scene in upload keys: the history's name (".json" dropped), "/" made "-" (a key
    segment, as the original pipeline had it)."""
    return name.replace(".json", "").replace("/", "-")


def file_name(name: str) -> str:
    """A file name for the scene on the node: the key name (team scripts take the scene name from
    the file's basename)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key_name(name)) or "scene"


@dataclass
class History:
    path: Path
    timestamp: str
    # score.confidence as MCS writes it: a string ("-1" after a crash or an inactivity end).
    confidence: str | None

    @property
    def scored_minus_one(self) -> bool:
        try:
            return float(self.confidence) == -1  # "-1", or "-1.0" where MCS's model made it float
        except (TypeError, ValueError):
            return False


@dataclass
class Outputs:
    history: History | None = None
    videos: dict[str, Path] = field(default_factory=dict)  # type -> file
    notes: list[str] = field(default_factory=list)  # what was found and left out, for the log


def fresh(path: Path, since_ns: int) -> bool:
    try:
        return path.stat().st_mtime_ns >= since_ns - MTIME_SLACK_NS
    except OSError:
        return False


def find_history(eval_dir: Path, name: str, since_ns: int) -> History | None:
    """This attempt's complete history: the newest fresh `<stem>-<stamp>.json` that parses (MCS
    writes it in one go; a half-written file is not there yet)."""
    stem = Path("SCENE_HISTORY") / name.replace(".json", "")
    folder = eval_dir / stem.parent
    pattern = re.compile(rf"^{re.escape(stem.name)}-({STAMP})\.json$")
    try:
        entries = list(folder.iterdir())
    except OSError:
        return None
    found = sorted((m.group(1), p) for p in entries if (m := pattern.match(p.name)))
    for timestamp, path in reversed(found):
        if not fresh(path, since_ns):
            continue
        try:
            score = json.loads(path.read_text()).get("score") or {}
        except (OSError, ValueError, AttributeError):
            continue
        confidence = score.get("confidence") if isinstance(score, dict) else None
        return History(path, timestamp, None if confidence is None else str(confidence))
    return None


def find_outputs(eval_dir: Path, name: str, since_ns: int) -> Outputs:
    out = Outputs(history=find_history(eval_dir, name, since_ns))
    folder = eval_dir / name
    videos: dict[str, list[tuple[str, Path]]] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.mp4")):
            m = VIDEO.search(path.name)
            if not m:
                continue
            if not fresh(path, since_ns):
                out.notes.append(f"left out {path.name}: from before this attempt")
                continue
            videos.setdefault(m.group(2), []).append((m.group(1), path))
    if videos:
        # The history's set; without a history, the newest set this attempt wrote.
        stamp = out.history.timestamp if out.history else max(videos)
        for other in sorted(set(videos) - {stamp}):
            out.notes.append(f"left out {len(videos[other])} videos of {other}: not this "
                             f"attempt's history's ({stamp})")
        out.videos = {kind: path for kind, path in videos.get(stamp, [])}
    return out
