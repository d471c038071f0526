"""Merge the JSON reports of several bench runs into one report, table, plot and history.

    python -m fastcifar.bench.merge --json OUT/bench.json --markdown OUT/bench.md \\
        --plot OUT/bench.png --history OUT/history.jsonl OUT/pipeline.json OUT/step.json

Used by benchmarks/gpu_suite.sh, whose stages run as separate processes (each under its
own timeout). A report that is missing or unreadable is named and left out.
"""
from __future__ import annotations

import argparse
import json
import sys

from fastcifar.bench.plot import MissingPlotLibrary, draw
from fastcifar.bench.report import (
    append_history,
    format_env,
    format_table,
    merge_reports,
    read_history,
    write_json,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastcifar.bench.merge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", help="JSON reports of `fastcifar bench --json`")
    parser.add_argument("--json", dest="json_path", help="write the merged report here")
    parser.add_argument("--markdown", help="write the table (markdown) and env here")
    parser.add_argument("--plot", help="draw the merged plot here")
    parser.add_argument("--history", help="append the merged rows to this history file")
    args = parser.parse_args(argv)

    reports = []
    for path in args.reports:
        try:
            with open(path) as f:
                reports.append(json.load(f))
        except (OSError, ValueError) as exc:
            print(f"merge: left out {path}: {exc}", file=sys.stderr)
    if not reports:
        print("merge: no report to merge", file=sys.stderr)
        return 1
    merged = merge_reports(reports)
    print(format_env(merged["env"]))
    print(format_table(merged))
    if args.json_path:
        write_json(args.json_path, merged)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"{format_env(merged['env'])}\n\n{format_table(merged, markdown=True)}\n")
    if args.history:
        append_history(args.history, merged)
    if args.plot:
        try:
            draw(args.plot, merged, read_history(args.history) if args.history else [])
        except MissingPlotLibrary as exc:
            print(exc, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
