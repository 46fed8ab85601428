"""Homomorphic encryption protocols: a prediction from one server, a sum nobody sees.

1. A patient's lab results (sklearn's breast-cancer data) go to a hospital's logistic
   regression encrypted under the patient's own CKKS key: the hospital evaluates the
   model on ciphertexts and sends back an encrypted score; only the patient decrypts.
   No second server, no dealer.  Then a digits MLP retrained with square activations
   (the CKKS-friendly form of a user's architecture), 32 images per ciphertext.
2. Ten clinics add up model updates under a committee's threshold Paillier key: each
   sends one message and leaves; any 2 of the 3 committee members decrypt only the
   sum, with proofs that their partial decryptions are correct.

Run:  python examples/homomorphic.py
"""

from __future__ import annotations

import numpy as np
from mpcai.protocols import he_aggregation as ha
from mpcai.protocols.inference import from_sklearn, he
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


def main() -> dict[str, float]:
    out: dict[str, float] = {}
    # 1a. one server, the client's own key: logistic regression on breast cancer
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.3, random_state=0)
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), np.clip(scaler.transform(x_test), -8, 8)
    clf = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    res = he.simulate(from_sklearn(clf), x_test)
    out["lr_agree"] = float((res.labels == clf.predict(x_test)).mean())
    print(f"CKKS logistic regression, {len(x_test)} patients: labels agree with plaintext "
          f"{out['lr_agree']:.4f}; {res.per_query_seconds * 1e3:.2f} ms and "
          f"{(res.bytes_to_server - res.setup_bytes) / len(x_test) / 1e3:.1f} kB per query "
          f"(after a {res.setup_bytes / 1e6:.1f} MB public context sent once)")

    # 1b. a digits MLP retrained with square activations, then evaluated under CKKS
    xd, yd = load_digits(return_X_y=True)
    xd_train, xd_test, yd_train, yd_test = train_test_split(
        xd / 16, yd, test_size=0.2, random_state=0, stratify=yd)
    sq = he.retrain_square((32,), xd_train, yd_train, validation=(xd_test, yd_test))
    res = he.simulate(sq.model, xd_test[:64])
    out["mlp_accuracy_plain"] = float(sq.accuracy)
    out["mlp_agree"] = float((res.labels == sq.model.predict(xd_test[:64])).mean())
    print(f"CKKS square-activation MLP 64-32-10 (plaintext accuracy {sq.accuracy:.4f}): "
          f"labels agree {out['mlp_agree']:.4f} on 64 images, "
          f"{res.per_query_seconds * 1e3:.1f} ms per image")

    # 2. one message per client under a threshold Paillier key (2 of 3 members)
    rng = np.random.default_rng(0)  # example data only
    updates = [rng.uniform(-0.5, 0.5, 2_000) for _ in range(10)]
    agg = ha.simulate(updates, committee=(2, 3), dropouts=[4], committee_dropouts=[3])
    plain = np.mean([u for i, u in enumerate(updates, start=1) if i != 4], axis=0)
    out["agg_max_error"] = float(np.max(np.abs(agg.mean - plain)))
    print(f"threshold Paillier aggregation: {len(agg.participants)} of 10 clinics in the sum "
          f"(one never sent), decrypted by committee parties {sorted(agg.decrypted_by)} "
          "(one was down); "
          f"max error vs the plaintext mean {out['agg_max_error']:.1e}")
    return out


if __name__ == "__main__":
    main()
