"""Hosted mode (``KD_HOSTED=1``, on in the Dockerfile): what a visitor of the public demo may name, see and start.

The threat is a visitor who types things: a server path where a dataset or a model is asked for, a run name
that climbs out of the store, a hundred queued runs, another visitor's run. The rules, enforced on the server
side (the UI only offers what passes them):
- data comes from the configured data folders (``KD_DATA_DIR``, ``./data``), the visitor's own uploads, or a Hub
  dataset id; model specs are Hub ids, ``bundled:``, ``truncate:``/``config:``, and model folders inside the
  visitor's runs, the shared gallery or ``KD_EXTRA_MODELS`` (folders the operator listed). No other path;
- each browser session gets a random visitor id (128 bits, kept in ``st.session_state`` and mirrored into the
  page address as ``?visitor=...`` so a reload keeps it; no cookie). Its runs live in
  ``$KD_RUNS_DIR/visitors/<id>/`` and its uploads in ``<uploads>/visitors/<id>/``. The gallery,
  ``$KD_RUNS_DIR/gallery/``, is shared and read-only for visitors: an operator publishes a finished run into it
  with ``python -m distill_core.hosting publish --run PATH``;
- ``KD_MAX_JOBS`` caps live workers across all visitors together (one scheduler lock at the store's root), and
  ``KD_MAX_LIVE_PER_VISITOR`` (default 2) caps one visitor's queued + running runs.
Run names go through runs.sanitize_run_name, uploads through the KD_MAX_UPLOAD_MB cap, and weights load from
safetensors only with trust_remote_code off, in every mode (models.py).

Not streamlit-aware: pages pass ``st.session_state`` and ``st.query_params`` in as mappings.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from . import env, runs, specs
from .errors import UserError

VISITORS_DIR = "visitors"
GALLERY_DIR = "gallery"
VISITOR_KEY = "visitor"             # key in st.session_state and in the page address (?visitor=...)
DEFAULT_MAX_LIVE_PER_VISITOR = 2    # a pipeline (teacher fine-tune + distillation) needs two
_VISITOR_RE = re.compile(r"[0-9a-f]{32}")


def is_hosted() -> bool:
    """Whether this server is the public demo (``KD_HOSTED`` set to 1/true/yes/on)."""
    return env.flag("KD_HOSTED")


# ---------------------------------------------------------------- visitors and their folders
def new_visitor_id() -> str:
    return secrets.token_hex(16)


def is_visitor_id(value: object) -> bool:
    return isinstance(value, str) and _VISITOR_RE.fullmatch(value) is not None


def session_visitor(state: MutableMapping, params: MutableMapping | None = None) -> str | None:
    """The visitor id of this browser session (None unless hosted), created on first use.

    Kept in ``state`` (st.session_state); mirrored into ``params`` (st.query_params) so that a reload, which
    starts a new session, finds it again. An id that is not 32 hex digits is ignored, so the address cannot
    be used to name a folder.
    """
    if not is_hosted():
        return None
    visitor = state.get(VISITOR_KEY)
    if not is_visitor_id(visitor):
        from_address = params.get(VISITOR_KEY) if params is not None else None
        visitor = from_address if is_visitor_id(from_address) else new_visitor_id()
        state[VISITOR_KEY] = visitor
    if params is not None and params.get(VISITOR_KEY) != visitor:
        params[VISITOR_KEY] = visitor
    return visitor


def visitor_root(visitor: str, base: Path | None = None) -> Path:
    """``<store>/visitors/<id>``, created on demand."""
    if not is_visitor_id(visitor):
        raise UserError(f"invalid visitor id {visitor!r}: expected 32 hex digits")
    root = (Path(base) if base is not None else runs.runs_root()) / VISITORS_DIR / visitor
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def gallery_root(base: Path | None = None) -> Path:
    """``<store>/gallery``: finished runs an operator shared with every visitor."""
    root = (Path(base) if base is not None else runs.runs_root()) / GALLERY_DIR
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def session_root(state: MutableMapping, params: MutableMapping | None = None) -> Path:
    """The runs folder this session works in: the store itself, or in hosted mode the visitor's own folder."""
    visitor = session_visitor(state, params)
    return runs.runs_root() if visitor is None else visitor_root(visitor)


def session_uploads(uploads: Path, state: MutableMapping, params: MutableMapping | None = None) -> Path:
    """Where this session's uploads go: ``uploads`` itself, or in hosted mode ``uploads/visitors/<id>``."""
    visitor = session_visitor(state, params)
    if visitor is None:
        return Path(uploads)
    folder = Path(uploads) / VISITORS_DIR / visitor
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


def visitor_of(root: Path) -> str | None:
    """The visitor id of a visitor runs folder, None for any other folder."""
    root = Path(root)
    return root.name if root.parent.name == VISITORS_DIR and is_visitor_id(root.name) else None


def store_base(root: Path) -> Path:
    """The store a runs folder belongs to: a visitor's folder or the gallery -> the store root; else itself."""
    root = Path(root).resolve()
    if visitor_of(root) is not None:
        return root.parent.parent
    return root


def with_gallery(choices_for: Callable[[Path], dict[str, str]], root: Path) -> dict[str, str]:
    """``choices_for(root)``, plus in hosted mode the gallery's choices labelled as such (spec -> label)."""
    choices = dict(choices_for(root))
    if is_hosted():
        for spec, label in choices_for(gallery_root(store_base(root))).items():
            choices.setdefault(spec, f"{label} · gallery")
    return choices


# ---------------------------------------------------------------- scheduling scope (used by jobs.py)
def scheduler_scope(root: Path) -> tuple[Path, list[Path]]:
    """(folder of the scheduler lock, runs folders sharing one KD_MAX_JOBS cap) for runs under ``root``.

    A visitor's folder shares the cap with every other visitor, the gallery and the store root, so the cap
    holds for the whole server however many visitors there are. Any other folder is its own scope.
    """
    root = Path(root).resolve()
    if visitor_of(root) is None:
        return root, [root]
    base = root.parent.parent
    roots = [base]
    if (base / GALLERY_DIR).is_dir():
        roots.append(base / GALLERY_DIR)
    with contextlib.suppress(OSError):  # no visitor folder yet
        roots.extend(sorted(p for p in (base / VISITORS_DIR).iterdir() if is_visitor_id(p.name) and p.is_dir()))
    if root not in roots:
        roots.append(root)
    return base, roots


def max_live_per_visitor() -> int:
    return env.positive_int("KD_MAX_LIVE_PER_VISITOR", DEFAULT_MAX_LIVE_PER_VISITOR)


# ---------------------------------------------------------------- what a visitor may name
def _inside(path: Path, folders: Sequence[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == Path(f).resolve() or resolved.is_relative_to(Path(f).resolve()) for f in folders)


def extra_model_folders() -> list[Path]:
    """Model folders the operator listed in ``KD_EXTRA_MODELS`` (allowed in hosted mode)."""
    return [Path(item.strip()).expanduser() for item in os.environ.get("KD_EXTRA_MODELS", "").split(os.pathsep)
            if item.strip()]


def check_model_spec(spec: str | None, root: Path, *, role: str = "model") -> None:
    """Hosted mode: refuse a model spec that names a server folder outside the visitor's runs, the gallery and
    the operator's KD_EXTRA_MODELS. Elsewhere a no-op (the CLI and a local dashboard may load any folder)."""
    if not is_hosted() or not spec:
        return
    try:
        parsed = specs.parse_spec(spec)  # "hub" only for ids that pass specs.is_hub_id: no path syntax
    except UserError:
        if spec.strip().startswith(("bundled:", "truncate:", "config:")):
            raise  # a mistyped recipe: its own message says how to write it
        parsed = None  # neither a folder nor a Hub id (e.g. "org/.."): refused below like any server path
    if parsed is not None and parsed.kind in ("bundled", "truncate", "config", "hub"):
        return
    allowed = [Path(root), gallery_root(store_base(root)), *extra_model_folders()]
    if parsed is not None and parsed.kind == "local" and _inside(Path(parsed.value), allowed):
        return
    raise UserError(f"{role} {spec!r} is not allowed on the hosted demo: pick one of your finished runs, a gallery "
                    "model, bundled:minilm-l6, truncate:N, config:L<n>-H<h> or a Hub id (org/name)")


def check_data_source(source: str, allowed_folders: Sequence[Path]) -> None:
    """Hosted mode: refuse a data source that is neither inside ``allowed_folders`` (the configured data folders
    and the visitor's uploads) nor a Hub dataset id. Elsewhere a no-op."""
    if not is_hosted():
        return
    from .data import resolve_local

    source = (source or "").strip()
    local = resolve_local(source)  # exactly the path load_data would read
    if local is None and specs.is_hub_id(source):  # no path syntax passes the Hub-id rule
        return
    if local is not None and _inside(local, allowed_folders):
        return
    raise UserError(f"data source {source!r} is not allowed on the hosted demo: pick a listed dataset, upload a "
                    "file, or give a Hub dataset id such as ag_news")


def check_new_runs(root: Path, count: int = 1) -> None:
    """Hosted mode: refuse to add ``count`` runs when the visitor already has KD_MAX_LIVE_PER_VISITOR live ones."""
    if not is_hosted() or visitor_of(Path(root).resolve()) is None:
        return
    cap = max_live_per_visitor()
    live = sum(1 for r in runs.list_runs(root) if r["state"] in runs.LIVE_STATES)
    if live + count > cap:
        raise UserError(f"you already have {live} run(s) queued or running (limit {cap} per visitor on the hosted "
                        "demo): wait for one to finish or stop it")


def check_train_config(config, root: Path, data_folders: Sequence[Path]) -> None:
    """Every hosted-mode rule for a run a visitor asks for: data source, teacher and student specs."""
    check_data_source(config.data.source, data_folders)
    check_model_spec(config.teacher, root, role="teacher")
    check_model_spec(config.student, root, role="student")


# ---------------------------------------------------------------- publishing to the gallery (operator CLI)
def publish(run_dir: Path, name: str | None = None, base: Path | None = None) -> Path:
    """Copy a finished run into the gallery (``<store>/gallery/<name>``); returns the gallery folder.

    The copy keeps config, metrics, eval and the saved model, not the worker log or the resume checkpoint.
    A distillation run's teacher must be readable by visitors too: publish the teacher run first (its config
    keeps pointing at the original folder, which still works for Compare; the Playground lists the gallery
    copy).
    """
    run_dir = Path(run_dir).resolve()
    status = runs.read_status(run_dir)
    if status.get("state") != "done" or not (run_dir / runs.MODEL_DIR / "config.json").is_file():
        raise UserError(f"{run_dir} is not a finished run with a saved model (state {status.get('state')}): "
                        "only done runs can be shared")
    gallery = gallery_root(base)
    target = runs.resolve_run_dir(gallery, name or run_dir.name)
    if target.exists():
        raise UserError(f"the gallery already has a run named {target.name!r}: pass --name")
    staging = gallery / f".{target.name}.publishing"
    shutil.rmtree(staging, ignore_errors=True)
    half_saved = [f"{runs.MODEL_DIR}{suffix}" for suffix in runs.STAGING_SUFFIXES]
    ignore = shutil.ignore_patterns(runs.LOG_FILE, runs.STOP_FILE, runs.CHECKPOINT_DIR, f"{runs.CHECKPOINT_DIR}.*",
                                    *half_saved, ".*.tmp", runs.STATUS_LOCK_FILE)
    try:
        shutil.copytree(run_dir, staging, ignore=ignore)
        os.replace(staging, target)  # visitors never see a half-copied run
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill_core.hosting",
                                     description="Operator commands for the hosted demo")
    commands = parser.add_subparsers(dest="command", required=True)
    share = commands.add_parser("publish", help="copy a finished run into the gallery every visitor sees")
    share.add_argument("--run", required=True, type=Path, help="the run folder, e.g. runs/visitors/ID/NAME")
    share.add_argument("--name", help="name in the gallery (default: the run's name)")
    share.add_argument("--runs-dir", type=Path, default=None, help="the store (default: $KD_RUNS_DIR or ./runs)")
    commands.add_parser("gallery", help="list the gallery's runs").add_argument("--runs-dir", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any]
    try:
        if args.command == "publish":
            result = {"published": str(publish(args.run, args.name, args.runs_dir))}
        else:
            result = {"runs": runs.list_runs(gallery_root(args.runs_dir))}
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
