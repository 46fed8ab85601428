"""``mpcai demo hospitals``: a small multi-party computation, step by step.

Hospitals add up private per-diagnosis patient counts (and lengths of stay)
without any of them, or anyone else, seeing another hospital's numbers:
first with additive sharing over Z_2^64 (everyone must take part), then
with Shamir t-of-n sharing over GF(2^61 - 1), where the total survives a
hospital going offline.  The parties run in one process here; the point is
to show what each one sends and holds.
"""

from __future__ import annotations

import secrets

import numpy as np

from mpcai import encoding
from mpcai.errors import InvalidInput
from mpcai.sharing import additive, shamir

NAMES = ["St. Mary", "Riverside", "Northgate", "Lakeview", "Hillcrest", "Bayside",
         "Kingsbridge", "Elmwood", "Harbor", "Westfield"]
DIAGNOSES = ["diabetes", "asthma", "sepsis", "stroke"]
FRAC_BITS = 16


def _hex(a: np.ndarray, k: int = 2) -> str:
    return " ".join(f"{int(v):016x}" for v in a.ravel()[:k]) + " ..."


def _private_data(n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    names = [NAMES[i] if i < len(NAMES) else f"Hospital {i + 1}" for i in range(n)]
    counts = np.array([[secrets.randbelow(500) for _ in DIAGNOSES] for _ in range(n)], np.float64)
    stays = np.array([secrets.randbelow(2000) / 100 + 1 for _ in range(n)])  # mean stay, days
    return names, counts, stays


def hospitals(n_hospitals: int = 3, threshold: int = 2) -> int:
    """Run the demo and print every step; returns a process exit code."""
    if n_hospitals < 3:
        raise InvalidInput("the demo needs at least 3 hospitals")
    if not 1 <= threshold <= n_hospitals:
        raise InvalidInput(f"threshold must be in [1, {n_hospitals}]")
    n = n_hospitals
    names, counts, stays = _private_data(n)
    # each hospital's private vector: counts per diagnosis, then mean stay x patients
    data = np.concatenate([counts, (stays * counts.sum(axis=1))[:, None]], axis=1)
    width = max(len(s) for s in names)

    print(f"mpcai demo: {n} hospitals add up private patient counts by secret sharing\n")
    print("Private inputs (each hospital knows only its own row):")
    header = " ".join(f"{d:>9}" for d in DIAGNOSES)
    print(f"  {'':{width}}  {header}  {'bed-days':>9}")
    for name, row in zip(names, data, strict=True):
        cells = " ".join(f"{int(v):9d}" for v in row[:-1])
        print(f"  {name:{width}}  {cells}  {row[-1]:9.2f}")

    # ---- additive sharing over Z_2^64 --------------------------------------
    print(f"\nStep 1  Each hospital encodes its row as fixed point ({FRAC_BITS} fractional bits)")
    print(f"        in Z_2^64 and splits it into {n} additive shares, one per hospital.")
    encoded = [encoding.encode_fixed(row, FRAC_BITS) for row in data]
    shares = [additive.share(e, n) for e in encoded]  # shares[i][j]: from i to j
    sent = 0
    for i in range(n):
        for j in range(n):
            if i != j:
                sent += shares[i][j].nbytes
    print(f"        e.g. {names[0]} -> {names[1]}: {_hex(shares[0][1])}  (uniformly random)")
    print("\nStep 2  Each hospital adds up the shares it holds (local, no communication).")
    partial = []
    for j in range(n):
        acc = shares[0][j]
        for i in range(1, n):
            acc = additive.add(acc, shares[i][j])
        partial.append(acc)
    print(f"        {names[1]}'s partial sum: {_hex(partial[1])}  (still random)")
    print("\nStep 3  The partial sums are published and added: only the total appears.")
    total = encoding.decode_fixed(additive.reconstruct(partial), FRAC_BITS)
    expected = data.sum(axis=0)
    err = float(np.max(np.abs(total - expected)))
    bound = n * 2.0 ** -(FRAC_BITS + 1) + 1e-9 * float(np.max(np.abs(expected)))
    cells = " ".join(f"{round(v):9d}" for v in total[:-1])
    print(f"  {'TOTAL':{width}}  {cells}  {total[-1]:9.2f}")
    print(f"        mean length of stay over all patients: {total[-1] / total[:-1].sum():.2f} days")
    print(f"        check against the plaintext sum: max error {err:.2e} "
          f"(bound {bound:.1e}) -> {'OK' if err <= bound else 'FAIL'}")
    add_bytes = sent // n + partial[0].nbytes * (n - 1)

    # ---- Shamir threshold sharing ------------------------------------------
    t = threshold
    print(f"\nStep 4  Threshold version: Shamir {t}-of-{n} sharing over GF(2^61 - 1).")
    print(f"        Any {t} hospitals recover the total; any {t - 1} learn nothing.")
    field_rows = [shamir.to_field(np.rint(row * 100).astype(np.int64)) for row in data]
    sh = [shamir.share(r, t, n) for r in field_rows]  # sh[i][j]: hospital i's share for j
    held = []
    for j in range(n):
        acc = sh[0][j]
        for i in range(1, n):
            acc = shamir.add_shares(acc, sh[i][j])
        held.append(acc)
    offline = secrets.randbelow(n)
    online = [s for k, s in enumerate(held) if k != offline][:t]
    print(f"        {names[offline]} goes offline; "
          f"{', '.join(names[k] for k in range(n) if k != offline)[:60]} carry on.")
    rec = shamir.from_field(shamir.reconstruct(online, t)).astype(np.float64) / 100
    err2 = float(np.max(np.abs(rec - expected)))
    cells = " ".join(f"{round(v):9d}" for v in rec[:-1])
    print(f"  {'TOTAL':{width}}  {cells}  {rec[-1]:9.2f}")
    print(f"        recovered from {t} shares, max error {err2:.2e} -> "
          f"{'OK' if err2 <= 0.005 * n else 'FAIL'}")

    print("\nSummary")
    print(f"  hospitals {n}, values per hospital {data.shape[1]}")
    print(f"  additive: {add_bytes} bytes sent per hospital, 2 rounds")
    sh_bytes = sum(s.values.nbytes for s in sh[0][1:]) + held[0].values.nbytes
    print(f"  shamir {t}-of-{n}: {sh_bytes} bytes sent per hospital, tolerates "
          f"{n - t} offline")
    ok = err <= bound and err2 <= 0.005 * n
    print("  result: " + ("both totals match the plaintext sum" if ok else "MISMATCH"))
    return 0 if ok else 1
