"""Writes taiwan_sklearn_reference.json: a tightly converged scikit-learn fit that the Rust
Newton trainer is checked against (models/tests/sklearn_equivalence.rs).

Run from the repository root with ../shared beside it:
    python3 models/tests/data/make_sklearn_reference.py ../shared/data/taiwan
Preprocessing matches fedrisk's: StandardScaler (population std) on every column as a number;
taiwan has no missing values, so no imputation is involved.
"""
import json
import platform
import sys

import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

data_dir = sys.argv[1]
train = pd.read_csv(f"{data_dir}/pooled_train.csv")
test = pd.read_csv(f"{data_dir}/test.csv")
features = [c for c in train.columns if c != "default"]
scaler = StandardScaler().fit(train[features].to_numpy(float))
x_train = scaler.transform(train[features].to_numpy(float))
x_test = scaler.transform(test[features].to_numpy(float))
model = LogisticRegression(C=1.0, tol=1e-10, max_iter=100000).fit(x_train, train["default"])
auc = roc_auc_score(test["default"], model.predict_proba(x_test)[:, 1])
out = {
    "dataset": "taiwan pooled_train.csv, scored on test.csv",
    "model": "StandardScaler -> LogisticRegression(C=1.0, tol=1e-10, max_iter=100000, lbfgs)",
    "features": features,
    "coefficients": model.coef_[0].tolist(),
    "intercept": float(model.intercept_[0]),
    "iterations": int(model.n_iter_[0]),
    "test_auc": auc,
    "scaler_mean": scaler.mean_.tolist(),
    "scaler_scale": scaler.scale_.tolist(),
    "versions": {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit_learn": sklearn.__version__,
    },
}
with open(__file__.replace("make_sklearn_reference.py", "taiwan_sklearn_reference.json"), "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
print(f"iterations {out['iterations']}, test AUC {auc:.6f}")
