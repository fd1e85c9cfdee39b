"""Draw the AG News sample embedded in data/ag_news_sample/ (how it was made; rerun to check it byte for byte).

    python tools/make_ag_news_sample.py --source ../shared/data/ag_news --out data/ag_news_sample

Stratified and seeded: 1,000 train rows per class from the source's train.csv and 250 test rows per class from
its test.csv (the official test split), each class's rows drawn with numpy's default_rng(SEED) and written in a
shuffled order. Texts and labels are copied unchanged.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20261202
PER_CLASS = {"train": 1_000, "test": 250}


def draw(frame: pd.DataFrame, per_class: int, rng: np.random.Generator) -> pd.DataFrame:
    parts = []
    for label in sorted(frame["label"].unique()):
        rows = frame[frame["label"] == label]
        parts.append(rows.iloc[np.sort(rng.choice(len(rows), size=per_class, replace=False))])
    sample = pd.concat(parts)
    return sample.iloc[rng.permutation(len(sample))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder with train.csv, test.csv, classes.txt")
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, per_class in PER_CLASS.items():
        frame = pd.read_csv(args.source / f"{split}.csv", keep_default_na=False)
        draw(frame, per_class, rng).to_csv(args.out / f"{split}.csv", index=False)
    shutil.copy(args.source / "classes.txt", args.out / "classes.txt")


if __name__ == "__main__":
    main()
