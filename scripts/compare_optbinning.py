"""Per-feature IV and test AUC of optbinning's BinningProcess + WOE + LogisticRegression on the
pooled training rows, beside fedrisk's federated binning (read from a `simulate --binning woe`
report.json). A reference comparison for MODELLING.md, not a CI dependency.

usage: python compare_optbinning.py DATA_DIR REPORT_JSON [--special COL=96,98 ...]
"""
import argparse
import json

import numpy as np
import pandas as pd
from optbinning import BinningProcess
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("report")
    ap.add_argument("--special", action="append", default=[])
    a = ap.parse_args()
    train = pd.read_csv(f"{a.data}/pooled_train.csv")
    test = pd.read_csv(f"{a.data}/test.csv")
    y, yt = train.pop("default").values, test.pop("default").values
    special = {}
    for s in a.special:
        col, codes = s.split("=")
        special[col] = [float(c) for c in codes.split(",")]
    names = list(train.columns)
    bp = BinningProcess(names, special_codes=special or None)
    bp.fit(train, y)
    x, xt = bp.transform(train, metric="woe"), bp.transform(test, metric="woe")
    lr = LogisticRegression(max_iter=1000).fit(x, y)
    auc = roc_auc_score(yt, lr.predict_proba(xt)[:, 1])
    summary = bp.summary().set_index("name")
    report = json.load(open(a.report))
    ours = {f["name"]: f for f in report["features"]}
    fed_auc = report["rounds"][-1]["auc"]
    print("| feature | optbinning IV | optbinning bins | fedrisk IV | fedrisk bins |")
    print("|---|---:|---:|---:|---:|")
    for n in names:
        f = ours[n]
        regular = [b for b in f["bins"] if b["label"] != "missing" and not b["label"].startswith("special")]
        print(
            f"| {n} | {summary.loc[n, 'iv']:.4f} | {int(summary.loc[n, 'n_bins'])} "
            f"| {f['iv']:.4f} | {len(regular)} |"
        )
    print(f"\ntest AUC: optbinning + LR (pooled) {auc:.4f}; fedrisk federated WOE + Newton {fed_auc:.4f}")


if __name__ == "__main__":
    main()
