"""Extract the request and response examples of the 23blocks Rewards Block reference into
blocks_examples.json, which the dialect's contract tests are built from.

    python -m tests.contract.extract_blocks_examples [path/to/004_...txt]

Only the JSON examples are kept (the contract), not the document's prose.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
EXAMPLES = HERE / "blocks_examples.json"
SEED = HERE.parents[2] / "shared" / "seeds" / "004_c8a7ef8c4bd1f7e3.txt"

SECTIONS = (
    "Points API",
    "Tiers API",
    "Badges API",
    "Coupons API",
    "Referrals API",
    "Rewards Catalog API",
    "Leaderboards API",
    "Streaks API",
    "Challenges API",
    "Webhooks",
    "SDK Examples",
)
_ENDPOINT = re.compile(r"^(GET|POST|PATCH|PUT|DELETE) (/v1/rewards/\S+)$")
_RESPONSE = re.compile(r"^Response: (\d{3})")
_OBJECT = re.compile(r"^(\w[\w ]*) Object$")


def _json_after(lines: list[str], start: int) -> tuple[Any, int]:
    """The JSON value that begins on the first line at or after `start` opening with {."""
    index = start
    while not lines[index].startswith("{"):
        index += 1
    text = "\n".join(lines[index:])
    value, end = json.JSONDecoder().raw_decode(text)
    return value, index + text[:end].count("\n") + 1


def extract(text: str) -> dict[str, Any]:
    lines = text.splitlines()
    section: str | None = None
    current: dict[str, Any] | None = None
    sections: dict[str, dict[str, Any]] = {}
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if line in SECTIONS:
            section = line
            sections.setdefault(section, {"objects": {}, "endpoints": []})
            current = None
        elif section is not None and section != "SDK Examples":
            if match := _OBJECT.match(line):
                value, index = _json_after(lines, index + 1)
                sections[section]["objects"][match[1]] = value
                continue
            if match := _ENDPOINT.match(line):
                current = {"method": match[1], "path": match[2]}
                sections[section]["endpoints"].append(current)
            elif current is not None and line == "Request Body:":
                current["request"], index = _json_after(lines, index + 1)
                continue
            elif current is not None and (match := _RESPONSE.match(line)):
                current["status"] = int(match[1])
                current["response"], index = _json_after(lines, index + 1)
                continue
            elif current is not None and line == "Validation Errors:":
                current["refusal"], index = _json_after(lines, index + 1)
                continue
            elif section == "Webhooks" and line == "Webhook Payload Example":
                sections[section]["objects"]["Webhook Payload"], index = _json_after(
                    lines, index + 1
                )
                continue
        index += 1
    sections.pop("SDK Examples", None)
    return sections


def main() -> None:
    seed = Path(sys.argv[1]) if len(sys.argv) > 1 else SEED
    EXAMPLES.write_text(json.dumps(extract(seed.read_text()), indent=1) + "\n")


if __name__ == "__main__":
    main()
