"""Private inference: a clinic's images, a hospital's model, neither sees the other's.

The hospital (party 1) trained an MLP on sklearn's digits; the clinic (party 0)
has 360 images it wants classified.  Both run as compute parties of a two-party
computation with a dealer (party 2) that only hands out correlated randomness,
then with no third party at all (the two make their correlations by oblivious
transfer), then with three compute parties on replicated shares and no dealer:
only the clinic learns the results, and, with ``output="labels"``, only the
labels.  Run:  python examples/private_inference.py
"""

from __future__ import annotations

import warnings

import numpy as np
from mpcai.protocols import inference as inf
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier


def main() -> dict[str, float]:
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x / 16, y, test_size=0.2, random_state=0, stratify=y
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((32,), max_iter=1000, random_state=0).fit(x_train, y_train)
    model = inf.from_sklearn(clf)
    plain = clf.predict(x_test)

    two = inf.simulate(model, x_test, input_bound=1.0)
    alone = inf.simulate(model, x_test, input_bound=1.0, provider="dealerless")
    three = inf.simulate(model, x_test, parties=3, input_bound=1.0, output="labels")
    out = {
        "plain_accuracy": float((plain == y_test).mean()),
        "agree_2pc": float((two.labels == plain).mean()),
        "agree_3pc_labels_only": float((three.labels == plain).mean()),
        "max_logit_error_2pc": float(np.max(np.abs(two.logits - model.logits(x_test)))),
        "agree_2pc_dealerless": float((alone.labels == plain).mean()),
    }
    print(f"plaintext accuracy on {len(y_test)} test digits: {out['plain_accuracy']:.4f}")
    print(f"2 parties + dealer: labels agree {out['agree_2pc']:.4f}, max logit error "
          f"{out['max_logit_error_2pc']:.1e}, {two.online_rounds} online rounds, "
          f"{two.online_seconds * 1e3:.1f} ms")
    sent = [st.bytes_sent / 1e6 for st in alone.stats]
    print(f"2 parties, no dealer: labels agree {out['agree_2pc_dealerless']:.4f}, "
          f"{alone.online_rounds} online rounds; offline by oblivious transfer: the clinic "
          f"sent {sent[0]:.1f} MB, the hospital {sent[1]:.1f} MB")
    print(f"3 parties, labels only: labels agree {out['agree_3pc_labels_only']:.4f}, "
          f"{three.online_seconds * 1e3:.1f} ms; the clinic never saw the logits: "
          f"{three.logits is None}")
    return out


if __name__ == "__main__":
    main()
