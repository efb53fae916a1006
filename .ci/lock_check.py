"""CI: is requirements.lock (what the Docker image installs) current with pyproject.toml?

Compiles the lock again with the same command, starting from the committed pins (uv keeps
a pin that still satisfies pyproject.toml, so a new upstream release does not make the lock
stale), and fails with the difference if anything changed: a dependency added, removed or
given a range its pin no longer meets. To update: run LOCK_COMMAND from the repository.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
# The image runs every role, Flower included; --universal: any platform it is built on.
LOCK_COMMAND = (
    "uv pip compile pyproject.toml --extra flower --universal --python-version 3.11 "
    "--generate-hashes -o requirements.lock"
)


def pinned_lines(text: str) -> list[str]:
    """The lock without its comments (the header names the command and a date)."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        candidate = Path(scratch) / "requirements.lock"
        shutil.copy(LOCK, candidate)
        args = [*LOCK_COMMAND.split()[1:-1], str(candidate), "--quiet"]
        uv = Path(sys.executable).with_name("uv")
        subprocess.run([str(uv), *args], cwd=ROOT, check=True)  # noqa: S603 (our own command)
        before, after = pinned_lines(LOCK.read_text()), pinned_lines(candidate.read_text())
    if before == after:
        print("ci: requirements.lock is current", file=sys.stderr)
        return 0
    diff = difflib.unified_diff(before, after, "requirements.lock", "compiled now", lineterm="")
    print("\n".join(diff), file=sys.stderr)
    print(f"ci: requirements.lock is stale; update it with:\n  {LOCK_COMMAND}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
