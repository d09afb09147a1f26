"""Copy sample outputs into README.md from the committed results, so the README cannot go stale.

Each block in README.md between `<!-- sample: <name> -->` and `<!-- end sample -->` is replaced by
the table of the section, in the committed tables.md SECTIONS[<name>] names, whose heading starts
with the heading given there. tests/test_readme.py fails when README.md differs from what this script writes.

    python tools/readme_samples.py          # rewrite README.md
    python tools/readme_samples.py --check  # exit 1 if README.md is stale
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIRST = ROOT / "results" / "fashion_mnist" / "tables.md"  # the first study (underfit)
MEMORISE = ROOT / "results" / "fashion_mnist_memorise" / "tables.md"  # the study in the paper's regime
SECTIONS = {
    "memorise_verdicts": (MEMORISE, "## Plan verdicts"),
    "memorise_mechanism": (MEMORISE, "## Mechanism check"),
    "fashion_mnist_delta": (FIRST, "## Per-delta table: fashion_mnist (not in the paper) — setup"),
    "fashion_mnist_methods": (FIRST, "## Methods: each against standard"),
}
BLOCK = re.compile(r"(<!-- sample: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end sample -->)", re.S)


def section(tables: str, heading: str) -> str:
    """The table of the first section whose heading starts with `heading`, up to the next heading."""
    parts = re.split(r"(?m)^(?=## )", tables)
    for part in parts:
        if part.startswith(heading):
            body = part.split("\n", 1)[1].strip("\n")
            table = [line for line in body.splitlines() if line.startswith("|")]
            return "```\n" + "\n".join(table) + "\n```\n"
    raise SystemExit(f"error: no section '{heading}' in the committed tables: regenerate them with make study")


def rendered(readme: str) -> str:
    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in SECTIONS:
            raise SystemExit(f"error: README.md names an unknown sample '{name}': use one of {', '.join(SECTIONS)}")
        tables, heading = SECTIONS[name]
        return match.group(1) + section(tables.read_text(), heading) + match.group(4)
    return BLOCK.sub(fill, readme)


def main(argv: list[str]) -> int:
    readme = README.read_text()
    fresh = rendered(readme)
    if "--check" in argv:
        return 0 if fresh == readme else 1
    README.write_text(fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
