"""Every ``router`` module imports on its own, first thing in a fresh interpreter.

An import cycle hides as long as some other module happens to be imported first (the app, a test's
conftest): ``router.record.recorder`` imported before ``router.pipeline`` failed this way, because
each imported the other at the top. One interpreter per module, so no earlier import can mask it.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def router_modules() -> list[str]:
    out = []
    for path in sorted((ROOT / "router").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _import_alone(module: str) -> str | None:
    """None when ``import module`` works in a fresh interpreter, else the error's last line."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    if done.returncode == 0:
        return None
    return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"


def test_every_router_module_imports_alone_in_a_fresh_interpreter() -> None:
    modules = router_modules()
    assert "router.record.recorder" in modules and "router.pipeline" in modules
    with ThreadPoolExecutor(4) as pool:  # one interpreter per module, a few at a time
        errors = dict(zip(modules, pool.map(_import_alone, modules)))
    failed = {m: e for m, e in errors.items() if e is not None}
    assert not failed, "\n".join(f"{m}: {e}" for m, e in failed.items())
