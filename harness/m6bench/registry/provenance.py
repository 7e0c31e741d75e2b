"""Where and with what a run ran: hardware, software, code identity, memory peaks."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

HARNESS_DISTRIBUTION = "m6bench"
HARNESS_PACKAGE = "m6bench"
# What a code hash covers: the Python source of a package (data files and caches do not run).
SOURCE_SUFFIXES = (".py",)


@functools.cache
def hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads":
                            torch.get_num_threads(), "gpu": None, "driver": None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=False,
            )
            info["driver"] = out.stdout.strip().splitlines()[0] if out.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def distribution_version(distribution: str) -> str | None:
    """The installed version of ``distribution``; None when it is not installed (a module
    loaded from a path, a test's in-memory plugin)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def software(plugin_distribution: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "m6bench": distribution_version("m6bench"),
        "numpy": distribution_version("numpy"),
        "optuna": distribution_version("optuna"),
    }
    if plugin_distribution:
        info["plugin"] = {plugin_distribution: distribution_version(plugin_distribution)}
    return info


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _package_files(package: str) -> list[tuple[str, Path]]:
    """(relative name, path) of each source file of a top-level package or single module."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        files = []
        for location in spec.submodule_search_locations:
            root = Path(location)
            files += [(p.relative_to(root).as_posix(), p) for p in root.rglob("*")
                      if p.suffix in SOURCE_SUFFIXES and p.is_file()
                      and "__pycache__" not in p.parts]
        return sorted(files)
    origin = Path(spec.origin) if spec.origin else None
    return [(origin.name, origin)] if origin is not None and origin.is_file() else []


@functools.cache
def source_hash(package: str) -> str | None:
    """sha256 (16 hex digits) over the source files of a top-level package, by relative path.

    Read from disk once per process (:func:`clear_code_cache` forgets it), so a record names
    the code that was installed when its process started to use it.
    """
    files = _package_files(package)
    if not files:
        return None
    digest = hashlib.sha256()
    for relative, path in files:
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@functools.cache
def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the checkout m6bench's own source lives in.

    Never of the working directory: outside a checkout (an installed wheel) both are None,
    and a checkout that does not track m6bench's files (a virtual environment inside some
    other repository) is not m6bench's.
    """
    source = Path(__file__).resolve()
    commit = _git(source.parent, "rev-parse", "HEAD")
    if commit is None or _git(source.parent, "ls-files", "--error-unmatch", source.name) is None:
        return {"commit": None, "dirty": None}
    status = _git(source.parent, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def harness_identity() -> dict[str, Any]:
    """The harness's code: distribution, version, source hash and its checkout's git state."""
    return {"distribution": HARNESS_DISTRIBUTION,
            "version": distribution_version(HARNESS_DISTRIBUTION), "package": HARNESS_PACKAGE,
            "sha256": source_hash(HARNESS_PACKAGE), "git": git_state()}


def plugin_identity(name: str, distribution: str, version: str | None,
                    package: str | None) -> dict[str, Any]:
    """One plugin's code: where it comes from and a hash of its package's source."""
    return {"name": name, "distribution": distribution, "version": version,
            "package": package, "sha256": source_hash(package) if package else None}


def code_identity(plugin: dict[str, Any]) -> dict[str, Any]:
    """The ``code`` key of a record: the harness and the plugin that took part."""
    return {"harness": harness_identity(), "plugin": plugin}


def clear_code_cache() -> None:
    """Forget the hashed sources (tests that edit a plugin's source in one process)."""
    source_hash.cache_clear()
    git_state.cache_clear()


def peak_rss_mb() -> float:
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def peak_gpu_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20
