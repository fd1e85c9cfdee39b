"""Whether a recorded process still runs: the liveness checks behind run, job and showcase states.

A worker records its pid and its start time (``process_start_time``) when it claims work; a reader later asks
``pid_alive(pid, start_time)`` to tell a running worker from a dead one, and from an unrelated process that
reused the pid.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from /proc, or None where there is no /proc."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
        # The command name (field 2) may hold spaces and ')' itself, so split after its last ')'.
        fields = data[data.rindex(")") + 2:].split()
        return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)
    except (OSError, ValueError, IndexError):
        return None


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), to record beside a pid for ``pid_alive``; None
    where there is no /proc or no such process."""
    stat = proc_stat(pid)
    return stat[1] if stat else None


def pid_alive(pid: Any, start_time: int | None = None) -> bool:
    """Whether process ``pid`` runs (not a zombie) and, when ``start_time`` is known, is the same process.

    Comparing start times guards against pid reuse: after a reboot or a long time, a recorded worker pid may
    belong to an unrelated process.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass  # exists, owned by another user
    except OSError:  # ProcessLookupError above all
        return False
    stat = proc_stat(pid)  # a zombie has exited but still answers os.kill
    return stat is None or (stat[0] not in ("Z", "X") and (start_time is None or stat[1] == start_time))
