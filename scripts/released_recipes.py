"""The released fine-tuning recipes table: configs/sweeps/released_recipes.csv -> docs/finetune.md.

    python scripts/released_recipes.py --write                  # rewrite the table in docs/finetune.md
    python scripts/released_recipes.py --show MSSDF_CLONE CMID_CLONE   # print every cited line, to check them

One CSV row per (preset, task, option): the value in the released config, where it is (``MSSDF:`` is
github.com/CVEO/MSSDF at 562b6f5, ``CMID:`` github.com/NJU-LHRS/official-CMID at 6e1de74; path:line), the
value the rsbench preset uses (a Python literal; empty where rsbench has no such option) and why they differ.
``tests/test_released_recipes.py`` holds the presets and the document to this file.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CSV = REPO / "configs" / "sweeps" / "released_recipes.csv"
DOC = REPO / "docs" / "finetune.md"
START, END = "<!-- released-recipes:start -->", "<!-- released-recipes:end -->"
SOURCES = {"MSSDF": ("github.com/CVEO/MSSDF", "562b6f5"), "CMID": ("github.com/NJU-LHRS/official-CMID", "6e1de74")}
PRESETS = {
    "mssdf_paper": "MSSDF (ViT-B/16): `configs/sweeps/mssdf_paper.py`",
    "cmid_paper": "CMID, ResNet-50: `configs/sweeps/cmid_paper.py`",
    "cmid_paper_swin": "CMID, Swin-B: `configs/sweeps/cmid_paper_swin.py`",
}


def load(path: Path = CSV) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(rows: list[dict[str, str]]) -> str:
    """One table per preset: task, option, released value, where, preset value, note."""
    out = []
    for preset, title in PRESETS.items():
        out += [f"### {title}", "", "| task | option | released | where | preset | note |", "|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["preset"] == preset):
            where = f"`{r['source']}`" if r["source"] else "—"
            value = f"`{r['preset_value']}`" if r["preset_value"] else "(not an rsbench option)"
            option = f"`{r['option']}`" if r["kind"] != "none" else r["option"]
            task = r["task"] + (f" ({r['dataset']})" if r["dataset"] else "")
            out.append(f"| {task} | {option} | {_cell(r['released'])} | {where} | {value} | {_cell(r['note'])} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write(doc: Path = DOC, rows: list[dict[str, str]] | None = None) -> None:
    text = doc.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{START}\n{markdown(rows or load())}{END}{tail}")


def table_in(doc: Path = DOC) -> str:
    """The generated part of the document, as it is now."""
    text = doc.read_text()
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def show(clones: dict[str, Path]) -> None:
    """Print each row's cited lines from local clones (git checkouts or bare mirrors) for a reader to check."""
    for r in load():
        if not r["source"]:
            continue
        repo, path_lines = r["source"].split(":", 1)
        path, _, lines = path_lines.rpartition(":")
        text = subprocess.run(["git", "-C", str(clones[repo]), "show", f"{SOURCES[repo][1]}:{path}"],
                              capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
        numbers = []
        for part in lines.split(","):
            a, _, b = part.partition("-")
            numbers += range(int(a), int(b or a) + 1)
        cited = " | ".join(text[n - 1].strip() for n in numbers[:4])
        print(f"{r['preset']:16} {r['task']:16} {r['option']:18} {r['released'][:40]:40} <- {cited[:120]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite the table in docs/finetune.md")
    parser.add_argument("--show", nargs=2, metavar=("MSSDF_CLONE", "CMID_CLONE"), help="print the cited lines")
    args = parser.parse_args()
    if args.write:
        write()
    if args.show:
        show({"MSSDF": Path(args.show[0]), "CMID": Path(args.show[1])})
    if not args.write and not args.show:
        print(markdown(load()))


if __name__ == "__main__":
    main()
