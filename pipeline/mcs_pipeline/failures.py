"""Failure classes: what one attempt's signals mean, and which a new attempt can cure.

Team run scripts end with `unset MCS_CONFIG_FILE_PATH`, so their exit status is 0 whatever the
performer did: the scene history MCS wrote is the first witness, the exit status the last.
The README's "Porting a team module" has the table of signals and classes.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

from .mcs_outputs import History

# Classes a new attempt can cure: a flaky X server, a crash before start_scene (no history: the
# original pipeline retried it too), a node's services that did not start, a lost node, our own
# transient errors, and a wall clock that ran out before MCS ended the scene. A performer that
# crashed mid-scene, ran out of memory or that MCS ended for inactivity would repeat, at full GPU
# cost.
RETRYABLE = frozenset({"timeout", "xserver", "missing_outputs", "node_services", "node_lost",
                       "task_error"})

XSERVER_FAILURE = re.compile(
    r"Unable to start X Server|X server failed to start|\(EE\) Server terminated"
    r"|cannot open display|unable to open display",
    re.IGNORECASE,
)
OUT_OF_MEMORY = re.compile(
    r"MemoryError|out of memory|Cannot allocate memory|std::bad_alloc|oom-kill", re.IGNORECASE
)
# machine_common_sense.controller, when its `timeout` ends a scene no step came for.
MCS_INACTIVITY = re.compile(r"Attempting to end scene due to inactivity")


@dataclass
class Signals:
    exit_code: int | None  # None: the pipeline stopped the script
    timed_out: bool  # the wall clock ran out before MCS ended the scene
    log_tail: str
    history: History | None  # this attempt's, complete
    history_required: bool
    # The script still ran scene_end_grace_s after the history appeared and was stopped.
    lingered: bool = False


def classify(s: Signals) -> str | None:
    """The failure class of a finished attempt, or None when it succeeded."""
    if s.history is not None:
        if not s.history.scored_minus_one:
            return None  # MCS ended the scene with the performer's answer: a result
        # Score -1: MCS's atexit handler (a crash) or its inactivity timer ended the scene.
        if OUT_OF_MEMORY.search(s.log_tail):
            return "oom"
        if s.lingered or MCS_INACTIVITY.search(s.log_tail):
            return "inactivity"
        return "performer_crash"
    if s.timed_out:
        return "timeout"
    if XSERVER_FAILURE.search(s.log_tail):
        return "xserver"
    # 137 / -9: killed by SIGKILL, which on a scene node means the kernel's OOM killer.
    if s.exit_code in (137, -signal.SIGKILL) or OUT_OF_MEMORY.search(s.log_tail):
        return "oom"
    if s.exit_code != 0:
        return "script_error"
    return "missing_outputs" if s.history_required else None
