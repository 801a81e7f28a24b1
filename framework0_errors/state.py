"""Which state store a run uses, and finding the checkpoint a run resumes from.

The store is chosen by, in order: the ``--state`` option, the
``FRAMEWORK0_STATE`` environment variable, the recipe's
``error_handling.state.url``, and the embedded default
``sqlite:.framework0/state.db`` in the working directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import StateConfig
from .orchestrator.problems import Framework0Error
from .stores.select import (
    DEFAULT_STATE_URL,
    STATE_ENV_VAR,
    Checkpoint,
    Store,
    StoreUnavailableError,
    open_store,
)

__all__ = [
    "OpenedStore",
    "ResumeError",
    "find_checkpoint",
    "open_state",
    "recipe_identity",
    "redact_url",
    "state_url",
]


class ResumeError(Framework0Error):
    """A run cannot be resumed: no such run, or the recipe changed since."""

    __module__ = "framework0_errors"


@dataclass(frozen=True, slots=True)
class OpenedStore:
    """The store a run uses, its URL, and a warning if it is not the one asked for."""

    store: Store
    url: str
    warning: str | None = None


def state_url(
    option: str | None,
    config: StateConfig | None = None,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """Return the store URL: option, then environment, then recipe, then default."""
    for candidate in (option, environ.get(STATE_ENV_VAR), config.url if config else None):
        if candidate and candidate.strip():
            return candidate.strip()
    return DEFAULT_STATE_URL


def open_state(
    option: str | None,
    config: StateConfig | None = None,
    environ: Mapping[str, str] = os.environ,
) -> OpenedStore:
    """Open the run's store; with ``on_unavailable: local``, fall back to SQLite.

    Raises:
        StoreURLError: the URL is malformed.
        StoreUnavailableError: the store cannot be reached (and no fallback applies).
    """
    url = state_url(option, config, environ)
    retention = config.history if config is not None else 1000
    try:
        return OpenedStore(_open(url, retention), url)
    except StoreUnavailableError as exc:
        if config is None or config.on_unavailable != "local" or url == DEFAULT_STATE_URL:
            raise
        warning = f"state store unavailable ({exc}); using local state {DEFAULT_STATE_URL}"
        return OpenedStore(_open(DEFAULT_STATE_URL, retention), DEFAULT_STATE_URL, warning)


def _open(url: str, retention: int) -> Store:
    try:
        return open_store(url, error_retention=retention)
    except ImportError as exc:
        raise StoreUnavailableError(
            f"state store {redact_url(url)!r} needs a package that is not installed ({exc.name}); "
            "install it with: pip install 'framework0-errors[redis]'"
        ) from None


def redact_url(url: str) -> str:
    """Return ``url`` with any password in it masked, for reports and messages."""
    return re.sub(r"(//[^/@]*?:)[^/@]*@", r"\1***@", url)


def recipe_identity(path: str, raw: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """Return the recipe's resolved path and the SHA-256 of its bytes.

    A recipe that was never a file (parsed from text) is identified by its
    data instead.
    """
    resolved = Path(path).resolve()
    try:
        content = resolved.read_bytes()
    except OSError:
        if raw is None:
            raise
        content = json.dumps(raw, sort_keys=True, default=str).encode()
    return str(resolved), hashlib.sha256(content).hexdigest()


def find_checkpoint(
    store: Store, recipe_path: str, run_id: str | None, *, force: bool
) -> Checkpoint:
    """Return the checkpoint to resume: ``run_id``'s, or the recipe's latest run.

    Raises:
        ResumeError: no such run; the run is of another recipe; or the recipe
            file changed since the run (unless ``force``).
    """
    resolved, digest = recipe_identity(recipe_path)
    if run_id:
        checkpoint = store.load_checkpoint(run_id)
        if checkpoint is None:
            raise ResumeError(f"no run {run_id!r} in the state store; see `framework0 runs`")
        if checkpoint.recipe_path != resolved:
            raise ResumeError(f"run {run_id} is of {checkpoint.recipe_path}, not of {resolved}")
    else:
        found = store.latest_run(resolved)
        if found is None:
            raise ResumeError(f"no earlier run of {resolved} to resume; run it without --resume")
        checkpoint = found
    if checkpoint.recipe_hash != digest and not force:
        raise ResumeError(
            f"{recipe_path} changed since run {checkpoint.run_id}; resuming could mix two "
            "versions of the recipe. Run it afresh, or pass --force to resume anyway"
        )
    return checkpoint
