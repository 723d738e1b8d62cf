"""Scores a CSV with a fedrisk model exported as ONNX and PMML, through real consumers
(onnxruntime after the onnx checker; JPMML-Evaluator through jpmml_evaluator; PMML4S through
pypmml), and compares each with the scores `fedrisk-participant score` wrote.

usage: check_exports.py MODEL.json MODEL.onnx MODEL.pmml DATA.csv SCORES.csv TOLERANCE

Reads the raw fields as a CSV reader would (text trimmed; the schema's missing tokens are
missing) and hands them to each scorer untransformed: special codes, imputation,
standardisation and one-hot levels are the exported model's job. Prints one line per consumer
with the largest absolute difference and exits 1 if any exceeds TOLERANCE.
"""

import csv
import json
import math
import sys

import numpy as np


def read_inputs(model, data_path):
    schema = model["schema"]
    missing = set(schema["missing_tokens"])
    numeric = [f["name"] for f in schema["features"] if f["kind"] == "numeric"]
    categorical = [f["name"] for f in schema["features"] if f["kind"] == "categorical"]
    with open(data_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    num = np.full((len(rows), len(numeric)), np.nan, dtype=np.float64)
    cat = np.empty((len(rows), len(categorical)), dtype=object)
    records = []
    for i, row in enumerate(rows):
        record = {}
        for j, name in enumerate(numeric):
            text = row[name].strip()
            value = None if text in missing else float(text)
            if value is not None and math.isnan(value):
                value = None
            if value is not None:
                num[i, j] = value
            record[name] = value
        for j, name in enumerate(categorical):
            text = row[name].strip()
            cat[i, j] = text
            record[name] = None if text in missing else text
        records.append(record)
    return numeric, categorical, num, cat, records


def read_scores(path):
    with open(path, newline="") as fh:
        return np.array([float(r["probability"]) for r in csv.DictReader(fh)])


def onnx_scores(path, numeric, categorical, num, cat):
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {}
    if numeric:
        feeds["numeric"] = num
    if categorical:
        feeds["categorical"] = cat.astype(str)
    (probability,) = session.run(["probability"], feeds)
    return probability[:, 0]


def jpmml_scores(path, records):
    import pandas as pd
    from jpmml_evaluator import make_evaluator

    evaluator = make_evaluator(path).verify()
    frame = pd.DataFrame.from_records(records)
    out = evaluator.evaluateAll(frame)
    return out["probability"].to_numpy(dtype=np.float64)


def pypmml_scores(path, records):
    from pypmml import Model

    # pypmml hands a DataFrame to PMML4S as pandas JSON, whose numbers keep 10 digits: a value
    # a hair below a bin's cut would arrive on it. Its other documented input, a JSON string,
    # is written here with every digit (Python's shortest round-trip form; null = missing).
    model = Model.fromFile(path)
    columns = list(records[0]) if records else []
    payload = json.dumps(
        {"columns": columns, "data": [[r[c] for c in columns] for r in records]},
        allow_nan=False,
    )
    out = json.loads(model.predict(payload))
    k = out["columns"].index("probability")
    return np.array([row[k] for row in out["data"]], dtype=np.float64)


def main():
    model_path, onnx_path, pmml_path, data_path, scores_path, tol = sys.argv[1:7]
    tol = float(tol)
    with open(model_path) as fh:
        model = json.load(fh)
    numeric, categorical, num, cat, records = read_inputs(model, data_path)
    expected = read_scores(scores_path)
    if len(expected) != len(records):
        print(f"{scores_path}: {len(expected)} scores for {len(records)} rows")
        return 1
    failed = False
    for name, score in [
        ("onnxruntime", lambda: onnx_scores(onnx_path, numeric, categorical, num, cat)),
        ("jpmml-evaluator", lambda: jpmml_scores(pmml_path, records)),
        ("pypmml", lambda: pypmml_scores(pmml_path, records)),
    ]:
        got = score()
        diff = np.abs(got - expected)
        worst = float(np.max(diff)) if len(diff) else 0.0
        bad = (not np.all(np.isfinite(got))) or worst > tol
        print(f"{name}: {len(got)} rows, max abs difference {worst:.3e}"
              f"{' EXCEEDS ' + str(tol) if bad else ''}")
        if bad:
            k = int(np.nanargmax(np.where(np.isfinite(diff), diff, np.inf)))
            print(f"  worst row {k + 1}: fedrisk {expected[k]!r}, {name} {got[k]!r}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
