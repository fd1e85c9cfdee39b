"""BENCHMARKS.md section 9: issue 12's better students (benchmarks/better_students.py's results)."""
from __future__ import annotations

from report_format import pct, provenance, table


def section_students(students: dict | None) -> str:
    """Issue 12: test accuracy of each distillation method over seeds (benchmarks/better_students.py)."""
    import better_students

    out = ["## 9. Better students: methods over seeds (issue 12)\n"]
    if not students:
        return out[0] + "\n_Not measured yet: `python benchmarks/better_students.py run/report`._\n"
    teacher = students["teacher"]
    out.append(f"Teacher `{teacher['run']}`: test accuracy {100 * teacher['test_accuracy']:.2f}% on all test rows. "
               "Each row: one `distill` run per seed with the flags below, accuracy on every test row, mean ± "
               "sample std over the seeds.\n")
    out.append(better_students.markdown(students) + "\n")
    if students.get("sweep"):
        cells = [[f"{c['T']:g}", f"{c['alpha']:g}", c["seed"], c["state"], pct(c["valid_accuracy"], 2),
                  pct(c["test_accuracy"], 2)] for c in students["sweep"]]
        out.append("The T x alpha grid (`truncate:2`, chosen on validation accuracy):\n")
        out.append(table(["T", "alpha", "seed", "state", "validation", "test"], cells) + "\n")
    out.append("Commands (DATA = the 10,100-row AG News folder, TEACHER = the fine-tuned MiniLM-L6):\n")
    out += [f"- {row['student']}, {row['method']}: `{row['command']}`" for row in students["rows"]]
    out.append("\n" + provenance(students) + "\n")
    return "\n".join(out)
