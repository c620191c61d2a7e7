"""Run the benchmarks: `python -m bench [--quick] [NAME ...]` (see docs/performance.md).

NAME is one of decision, memory, storage, backlog, station, pin, bundle, bundle-fleet (default: all, in that
order, sharing one working directory so the large databases are built once).
``decision --against COMMIT`` runs the decision benchmark for COMMIT beside this
tree, interleaved in the same run (:mod:`bench.against`).
A full run writes bench/results/<name>.json and regenerates the figures in
docs/performance.md; ``--quick`` runs small sizes, writes
bench/results/quick/ and leaves the document alone.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from . import against, backlog, bundle, bundle_fleet, decision, memory, pin, report, station, storage
from .common import RESULTS, log
from .data import Workspace

BENCHMARKS = {"decision": decision.run, "memory": memory.run, "storage": storage.run, "backlog": backlog.run,
              "station": station.run, "pin": pin.run, "bundle": bundle.run, "bundle-fleet": bundle_fleet.run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, a fast pass (results not for the docs)")
    parser.add_argument("--workdir", type=Path,
                        help="where the databases go (default: a new directory under $TMPDIR); "
                             "put it on the disk you want measured")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--results", type=Path, help="where the JSON goes (default: bench/results[/quick])")
    parser.add_argument("--no-doc", action="store_true", help="do not regenerate docs/performance.md")
    parser.add_argument("--against", metavar="COMMIT",
                        help="run the decision benchmark for COMMIT too (checked out into a temporary git "
                             "worktree), interleaved with this tree in the same run; writes "
                             "decision_against.json and leaves docs/performance.md alone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.against:
        if args.names not in ([], ["decision"]):
            parser.error("--against runs the decision benchmark only: name no other")
        return run_against(args)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    results_dir = args.results or (RESULTS / "quick" if args.quick else RESULTS)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="accessctl-bench-"))
    ws = Workspace(root)
    failed = []
    written = []
    try:
        for name in names:
            log(f"== {name}{' (quick)' if args.quick else ''}; data in {root}")
            try:
                result = BENCHMARKS[name](ws, quick=args.quick)
            except Exception:
                traceback.print_exc()
                failed.append(name)
                continue
            written.append(result.doc)
            log(f"{name}: wrote {result.write(results_dir)}")
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    if written:
        print(report.summary_table(written))
    if not args.quick and not args.no_doc and not failed:
        log(f"regenerated {report.update_doc(report.load_results(results_dir))}")
    if failed:
        log(f"FAILED to run: {', '.join(failed)}")
        return 1
    return 0


def run_against(args) -> int:
    results_dir = args.results or (RESULTS / "quick" if args.quick else RESULTS)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="accessctl-bench-"))
    try:
        result = against.run(Workspace(root), commit=args.against, quick=args.quick)
    except against.AgainstError as exc:
        log(str(exc))
        return 2
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    log(f"decision --against: wrote {result.write(results_dir)}")
    print(against.table(result.doc))
    print()
    print(report.summary_table([result.doc]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
