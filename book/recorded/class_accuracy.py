"""Add each digit's validation accuracy to a recorded LeNet-5 run, after its first and last
epochs, for chapter 9's test of the plateau explanation.

    python book/recorded/class_accuracy.py RUN_FOLDER NAME.json

Run it with the code the run was made with (the commit in the recorded file). The last epoch
is read from the run's final checkpoint; the first is trained again from the run's own
specification (same code, same seed), and must give the recorded epoch-1 validation
accuracy exactly, else nothing is written. The file gains
``"class_accuracy": {"<epoch>": [accuracy of digit 0, ..., digit 9]}``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from minigrad.experiments.runs import RunSpec, build_run
from minigrad.fileio import atomic_write
from minigrad.tensor import Tensor, no_grad


def per_class(model, x: np.ndarray, y: np.ndarray) -> list[float]:
    """Validation accuracy of each digit (labels one-hot)."""
    with no_grad():
        predicted = np.concatenate([model(Tensor(x[i:i + 500])).data.argmax(1)
                                    for i in range(0, len(x), 500)])
    labels = y.argmax(1)
    return [float(np.mean(predicted[labels == c] == c)) for c in range(y.shape[1])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the run's output folder")
    p.add_argument("name", help="the recorded file under book/recorded/")
    args = p.parse_args()
    path = Path(__file__).parent / args.name
    recorded = json.loads(path.read_text())
    if not recorded["complete"]:
        raise SystemExit(f"{path.name}: the run is not complete")
    spec_dict = json.loads((args.run / "results.json").read_text())["spec"]
    spec = RunSpec(**spec_dict)
    history = recorded["history"]
    last = history["epochs"][-1]

    run, _ = build_run(spec)
    run.resume(args.run / "checkpoint.npz", spec.as_dict())
    found = {str(last): per_class(run.model, run.val.x, run.val.y)}

    first, _ = build_run(spec)
    per_epoch = spec.steps // last
    with threadpool_limits(limits=1, user_api="blas"):    # as the command line trains
        for _ in range(per_epoch):
            first.step()
    epoch1 = first.history.val_accuracy[0]
    if epoch1 != history["val_accuracy"][0]:
        raise SystemExit(f"epoch 1 trained again gives {epoch1}, the run recorded "
                         f"{history['val_accuracy'][0]}: not the same code or seed")
    found["1"] = per_class(first.model, first.val.x, first.val.y)
    recorded["class_accuracy"] = dict(sorted(found.items(), key=lambda kv: int(kv[0])))
    with atomic_write(path, "w") as f:
        json.dump(recorded, f, indent=1)
    print(path.name, {k: [round(a, 3) for a in v] for k, v in found.items()})


if __name__ == "__main__":
    main()
