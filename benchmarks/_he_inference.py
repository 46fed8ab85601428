"""CKKS client-server inference (``mpcai.protocols.inference.he``) against TenSEAL's tutorials.

Peer, in the same run and on the same CKKS parameters: the evaluation
TenSEAL's tutorials write (``enc_x.dot(w) + b`` for logistic regression,
``enc_x.mm(W1) + b1``, ``.square()``, ``.mm(W2) + b2`` for an MLP), one query
per ciphertext, timed per query from encryption to decryption in one process
(no serialisation, no network: the peer's cost is a lower bound of its
client-server latency).  Ours is the client's latency per query through
:func:`~mpcai.protocols.inference.he.simulate` (encrypt, serialise, the
server's evaluation, serialise, decrypt; in one process over memory
channels), one query per round trip or a ciphertext of queries side by side.
Records carry the bytes each way (whole frames), the one-off context, the
server's evaluation time and label agreement with the plaintext model.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import tenseal as ts
from mpcai.protocols import inference as inf
from mpcai.protocols.inference import he

from mpcai.he.ckks import PRESETS

from ._common import record
from ._simd import cpu_model


def _tenseal_context(preset: str) -> ts.Context:
    p = PRESETS[preset]
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, p.poly_modulus_degree,
                     coeff_mod_bit_sizes=list(p.coeff_mod_bit_sizes))
    ctx.global_scale = 2.0**p.scale_bits
    ctx.generate_galois_keys()
    return ctx


def _median_per_query(fn: Any, xs: np.ndarray) -> tuple[float, list[np.ndarray]]:
    fn(xs[0])  # warm-up
    times, outs = [], []
    for row in xs:
        t0 = time.perf_counter()
        outs.append(fn(row))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), outs


def _cancer() -> tuple[inf.Model, np.ndarray]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, _ = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    sc = StandardScaler().fit(xtr)
    lr = LogisticRegression(max_iter=2000).fit(sc.transform(xtr), ytr)
    return inf.from_sklearn(lr), sc.transform(xte)


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return train_test_split(x / 16, y, test_size=0.2, random_state=0, stratify=y)


def _common(res: he.HEResult, model: inf.Model, x: np.ndarray) -> dict[str, Any]:
    plain = model.logits(x)
    n = x.shape[0]
    return {
        "preset": res.plan.preset,
        "queries_per_ciphertext": res.plan.capacity,
        "queries": n,
        "max_abs_error": float(np.max(np.abs(res.outputs - plain))),
        "label_agreement": float(np.mean(res.labels == model.predict(x))),
        "bytes_to_server_per_query": res.client.query_bytes / n,
        "bytes_to_client_per_query": res.client.result_bytes / n,
        "setup_bytes_to_server": res.setup_bytes,
        "server_eval_s_per_query": sum(res.server_seconds) / n,
        "client_keygen_s": res.keygen_seconds,
        "cpu": cpu_model(),
    }


def _cancer_records(quick: bool) -> list[dict]:
    model, x = _cancer()
    lin = model.layers[0]
    assert isinstance(lin, inf.Linear)
    w, b = lin.weight[:, 0].tolist(), float(lin.bias[0])
    tctx = _tenseal_context("n8192")

    def tutorial(row: np.ndarray) -> float:
        enc_x = ts.ckks_vector(tctx, row.tolist())
        enc_out = enc_x.dot(w) + b
        return enc_out.decrypt()[0]

    n_peer = 10 if quick else 30
    peer_s, peer_out = _median_per_query(tutorial, x[:n_peer])
    peer_err = float(np.max(np.abs(np.array(peer_out) - model.logits(x[:n_peer])[:, 0])))

    one = he.simulate(model, x[:n_peer], batch=1)  # one query per round trip
    single_s = float(np.median(one.latency_seconds[1:]))
    rec = [record("he inference breast-cancer LR, one query (N=8192)", single_s,
                  "TenSEAL tutorial enc_x.dot(w) + b (one query)", peer_s,
                  **_common(one, model, x[:n_peer]), tenseal_max_abs_error=peer_err,
                  bytes_to_server=one.client.query_bytes / n_peer,
                  bytes_to_client=one.client.result_bytes / n_peer)]

    x100 = np.tile(x, (2, 1))[:100]
    hundred = he.simulate(model, x100)
    rec.append(record("he inference breast-cancer LR, 100 queries in one ciphertext, per query "
                      "(N=8192)", hundred.per_query_seconds,
                      "TenSEAL tutorial enc_x.dot(w) + b (one query)", peer_s,
                      **_common(hundred, model, x100), batch_latency_s=hundred.latency_seconds[0]))

    whole = he.simulate(model, x)  # the whole test split: accuracy as in plaintext?
    rec.append(record(f"he inference breast-cancer LR, whole test split ({x.shape[0]} queries, "
                      f"{len(whole.rows)} ciphertexts), per query", whole.per_query_seconds,
                      "TenSEAL tutorial enc_x.dot(w) + b (one query)", peer_s,
                      **_common(whole, model, x),
                      labels_equal_to_plaintext=bool(np.array_equal(whole.labels,
                                                                    model.predict(x)))))
    return rec


def _mlp_records(quick: bool) -> list[dict]:
    xtr, xte, ytr, yte = _digits()
    fit = he.retrain_square((32,), xtr, ytr, validation=(xte, yte), epochs=60)
    model = fit.model
    l1, l2 = model.layers[0], model.layers[2]
    assert isinstance(l1, inf.Linear) and isinstance(l2, inf.Linear)
    w1, b1 = l1.weight.tolist(), l1.bias.tolist()
    w2, b2 = l2.weight.tolist(), l2.bias.tolist()
    preset = he.plan(model).preset
    tctx = _tenseal_context(preset)

    def tutorial(row: np.ndarray) -> np.ndarray:
        enc_x = ts.ckks_vector(tctx, row.tolist())
        enc_x = enc_x.mm(w1) + b1
        enc_x.square_()
        enc_x = enc_x.mm(w2) + b2
        return np.array(enc_x.decrypt())

    n_peer = 3 if quick else 8
    peer_s, peer_out = _median_per_query(tutorial, xte[:n_peer])
    peer_err = float(np.max(np.abs(np.array(peer_out) - model.logits(xte[:n_peer]))))

    x = xte[:64] if quick else xte
    res = he.simulate(model, x)
    plain_acc = float(np.mean(model.predict(x) == yte[: x.shape[0]]))
    he_acc = float(np.mean(res.labels == yte[: x.shape[0]]))
    rec = [record(f"he inference digits MLP 64-32-10 square, {x.shape[0]} images "
                  f"({res.plan.capacity} per ciphertext), per image (N=8192)",
                  res.per_query_seconds, "TenSEAL tutorial mm + square + mm (one image)",
                  peer_s, **_common(res, model, x), tenseal_max_abs_error=peer_err,
                  accuracy_he=he_acc, accuracy_plaintext=plain_acc,
                  accuracy_gap_points=100 * abs(he_acc - plain_acc))]
    one = he.simulate(model, xte[:n_peer + 1], batch=1)
    rec.append(record("he inference digits MLP 64-32-10 square, one image (N=8192)",
                      float(np.median(one.latency_seconds[1:])),
                      "TenSEAL tutorial mm + square + mm (one image)", peer_s,
                      **_common(one, model, xte[:n_peer + 1])))
    return rec


def _cnn_records(quick: bool) -> list[dict]:
    """A small CNN (Conv2d 1->4, 3x3, padding 1; square; AvgPool 2; Linear 64->10) through
    from_torch's dense conversion, retrained with squares (the dense first layer is 64x256)."""
    try:
        import torch
    except ImportError:
        return []
    xtr, xte, ytr, yte = _digits()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 10))
    init = inf.from_torch(net, (1, 8, 8))
    fit = he.retrain_square(init, xtr, ytr, validation=(xte, yte), epochs=60)
    model = fit.model
    x = xte[:32] if quick else xte[:128]
    res = he.simulate(model, x)
    l1, l2 = model.layers[0], model.layers[2]
    assert isinstance(l1, inf.Linear) and isinstance(l2, inf.Linear)
    tctx = _tenseal_context(res.plan.preset)
    w1, b1, w2, b2 = (a.tolist() for a in (l1.weight, l1.bias, l2.weight, l2.bias))

    def tutorial(row: np.ndarray) -> np.ndarray:
        enc_x = ts.ckks_vector(tctx, row.tolist())
        enc_x = enc_x.mm(w1) + b1
        enc_x.square_()
        return np.array((enc_x.mm(w2) + b2).decrypt())

    peer_s, _ = _median_per_query(tutorial, xte[:2 if quick else 4])
    return [record(f"he inference digits CNN conv3x3x4-square-pool-fc (dense 64x256, 256x10), "
                   f"{x.shape[0]} images ({res.plan.capacity} per ciphertext), per image",
                   res.per_query_seconds, "TenSEAL mm + square + mm on the dense layers",
                   peer_s, **_common(res, model, x), accuracy_plaintext=fit.accuracy,
                   accuracy_he=float(np.mean(res.labels == yte[: x.shape[0]])))]


def run(quick: bool = False) -> list[dict]:
    """Every record (``quick``: fewer queries and peer repetitions)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _cancer_records(quick) + _mlp_records(quick) + _cnn_records(quick)
