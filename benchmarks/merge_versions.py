"""One interleaved A/B of two versions of KD Studio, from peers_train.py results run alternately from two clones.

A change that has no switch (it is simply how the new code works) is measured by running
`peers_train.py --variants kd_studio --rounds 1 --seed S` from a clone of each version in turn (A B A B, one seed
per round), then merging the per-run results into one result in peers_train.py's format, so the report's A/B
tables read it like any other:

    python benchmarks/merge_versions.py --name teacher_pass_ab \\
        --variant kd_studio_teacher_fp32 teacher_ab_old_r1 teacher_ab_old_r2 \\
        --variant kd_studio teacher_ab_new_r1 teacher_ab_new_r2 \\
        --command "bash /tmp/kd/teacher_ab.sh (old = commit X, new = commit Y)"

A variant takes the rows of its own name where a result has them, else the result's `kd_studio` rows: so the peers
of the same rounds (`--variants trainer_bf16_tcmalloc seed`, run between the versions) merge in under their names,
and the merged result is a whole peers table (its summary computed as peers_train.py computes it).

Each run keeps its own load average, seed and start time; the merged result takes the machine of the first file.
"""
from __future__ import annotations

import argparse
import sys

from _common import read_result, write_result
from peers_train import summarise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True, help="results/<name>.json to write")
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar=("NAME", "RESULT"),
                        help="a variant name, then the results (peers_train.py --name) of its runs")
    parser.add_argument("--command", required=True, help="how the runs were made, for the report's Reproduce line")
    args = parser.parse_args()
    merged: dict = {}
    for name, *sources in args.variant:
        if not sources:
            parser.error(f"--variant {name}: name at least one result")
        for source in sources:
            result = read_result(source)
            if result is None:
                parser.error(f"--variant {name}: no benchmarks/results/{source}.json")
            rows = result["runs"].get(name, result["runs"].get("kd_studio"))
            if rows is None:
                parser.error(f"--variant {name}: {source} has neither {name} nor kd_studio runs")
            if not merged:
                merged = {**result, "runs": {}, "command": args.command, "sources": []}
                merged["settings"] = {**result["settings"], "rounds": len(sources)}
            merged["runs"].setdefault(name, []).extend(
                {**row, "round": index, "seed": result["settings"]["seed"]}
                for index, row in enumerate(rows, start=sources.index(source) + 1))
            merged["sources"].append(source)
    merged["summary"] = summarise(merged["runs"])
    write_result(args.name, merged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
