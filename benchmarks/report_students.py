"""BENCHMARKS.md section 9: issue 12's better students (benchmarks/better_students.py's results)."""
from __future__ import annotations

from report_format import pct, provenance, table

GRIDS = {"sweep": "`truncate:2`", "sweep_cf": "fresh `config:L4-H256`"}


def _grids(students: dict) -> list[str]:
    out = []
    for key, student in GRIDS.items():
        if students.get(key):
            cells = [[f"{c['T']:g}", f"{c['alpha']:g}", c["seed"], c["state"], pct(c["valid_accuracy"], 2),
                      pct(c["test_accuracy"], 2)] for c in students[key]]
            out.append(f"The T x alpha grid ({student}, chosen on validation accuracy):\n")
            out.append(table(["T", "alpha", "seed", "state", "validation", "test"], cells) + "\n")
    return out


def _body(students: dict) -> list[str]:
    import better_students

    teacher = students["teacher"]
    out = [f"Teacher `{teacher['run']}`: test accuracy {100 * teacher['test_accuracy']:.2f}% on all test rows. "
           "Each row: one `distill` run per seed with the flags below, accuracy on every test row, mean ± "
           "sample std over the seeds.\n", better_students.markdown(students) + "\n", *_grids(students),
           "Commands (DATA = the 10,100-row AG News folder, TEACHER = the fine-tuned MiniLM-L6):\n"]
    out += [f"- {row['student']}, {row['method']}: `{row['command']}`" for row in students["rows"]]
    out.append("\n" + provenance(students) + "\n")
    return out


def section_students(students: dict | None, remeasured: dict | None = None) -> str:
    """Issue 12: test accuracy of each distillation method over seeds (benchmarks/better_students.py); then the
    rows measured again against a re-trained teacher (better_students.py report --keys ...), if any."""
    out = ["## 9. Better students: methods over seeds (issue 12)\n"]
    if not students:
        return out[0] + "\n_Not measured yet: `python benchmarks/better_students.py run/report`._\n"
    out += _body(students)
    if remeasured:
        out.append("### 9b. Against a re-trained teacher: the fresh student's T x alpha sweep, the lean settings\n")
        out.append("The teacher above was lost with its machine; the same command trained it again, and a "
                   "different thread count and load changed the order of float sums, so this teacher differs. Each "
                   "seed setting is measured again against it, so the rows below compare like with like; do not "
                   "compare them with the table above.\n")
        out += _body(remeasured)
        runs_of = {row["key"]: [r["run"] for r in row["runs"]] for row in remeasured["rows"]}
        for key in ("t2", "cf"):
            if runs_of.get(f"{key}-best") and runs_of.get(f"{key}-best") == runs_of.get(f"{key}-kd"):
                out.append(f"The grid's best cell is the seed setting itself (T 2, alpha 0.5), so its row is the same "
                           f"three runs as the seed setting's ({', '.join(runs_of[f'{key}-kd'])}).\n")
        out += _paired(remeasured, PAIRED)
    return "\n".join(out)


# (row, its baseline, what differs): the same seeds with one setting changed, so per-seed differences are paired.
PAIRED = (("cf-attn0", "cf-kd", "attention dropout 0 on the fresh student"),
          ("t2-lean", "t2-frozen", "attention dropout 0 on frozen-embedding truncate:2"))


def _paired(result: dict, pairs: tuple[tuple[str, str, str], ...]) -> list[str]:
    """Per-seed test-accuracy differences (points) of each pair measured on the same seeds, mean and sample std."""
    import statistics

    by_key = {row["key"]: {r["seed"]: r["test_accuracy"] for r in row["runs"]} for row in result["rows"]}
    out = []
    for key, base, what in pairs:
        seeds = sorted(set(by_key.get(key, {})) & set(by_key.get(base, {})))
        if len(seeds) < 2:
            continue
        diffs = [100 * (by_key[key][s] - by_key[base][s]) for s in seeds]
        out.append(f"Paired over seeds {', '.join(map(str, seeds))}, {what} ({key} - {base}): "
                   f"{' / '.join(f'{d:+.2f}' for d in diffs)} points, mean {statistics.fmean(diffs):+.2f} ± "
                   f"{statistics.stdev(diffs):.2f}.\n")
    return out
