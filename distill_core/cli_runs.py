"""The CLI's run-management commands (list, delete, rename) and how a --run argument names a run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .errors import UserError


def run_location(run: Path) -> tuple[Path, str]:
    """--run as (runs folder, run name): a run folder, or a bare run name in $KD_RUNS_DIR."""
    from . import runs

    if len(run.parts) == 1 and not run.is_dir():
        return runs.runs_root(), run.name
    return run.resolve().parent, run.name  # a folder that is not there is named by the engine's check


def _confirmed(names: list[str]) -> bool:
    """Ask on the terminal; without one (a script), --yes is the only way to say yes."""
    if not sys.stdin.isatty():
        raise UserError("delete needs --yes when it cannot ask (no terminal): add --yes to delete "
                        + ", ".join(names))
    answer = input(f"Delete run(s) {', '.join(names)} and all their files? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_delete(args: argparse.Namespace) -> dict[str, Any]:
    from . import manage

    located = [run_location(run) for run in args.run]
    roots = {root for root, _ in located}
    if len(roots) > 1:
        raise UserError("--run: give runs of one runs folder per delete (found " + ", ".join(map(str, roots)) + ")")
    root, names = roots.pop(), [name for _, name in located]
    plan = manage.plan_delete(root, names)
    if plan.problems:
        raise UserError("; ".join(plan.problems))
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.yes and not _confirmed(names):
        return {"deleted": []}
    return {"deleted": manage.delete_runs(root, names)}


def cmd_rename(args: argparse.Namespace) -> dict[str, Any]:
    from . import manage

    root, name = run_location(args.run)
    new_dir, updated = manage.rename_run(root, name, args.to, field="--to")
    return {"run": str(new_dir), "references_updated": updated}


def cmd_list(args: argparse.Namespace) -> dict[str, Any]:
    from . import runs

    return {"runs": runs.list_runs(args.runs_dir or runs.runs_root())}
