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
from typing import TYPE_CHECKING

import numpy as np

from mpcai import encoding
from mpcai.errors import InvalidInput
from mpcai.sharing import additive, shamir

if TYPE_CHECKING:
    from mpcai.errors import PartyFailed

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
            acc = shamir.add(acc, sh[i][j])
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


def _demo_bytes(n_clients: int, dim: int) -> int:
    """What the demo holds at its peak, measured at 3 clients x 20M values: in the parent
    the float32 updates (4 B a value each) and the result and its check (~32 B a value);
    ~8 B a value in each client process (2.6x its update with the interpreter) and ~30 B
    in the server's."""
    return dim * (4 * n_clients + 32 + 8 * n_clients + 30)


def _update(rng: np.random.Generator, dim: int) -> np.ndarray:
    """A demo update drawn straight in float32 (no float64 temporaries)."""
    x = rng.standard_normal(dim, dtype=np.float32)
    x *= np.float32(0.3)
    np.clip(x, -1, 1, out=x)
    return x


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _print_failed(who: str, out: PartyFailed, debug: bool) -> None:
    """A party process that failed: its reason in one line; its log (the traceback, the
    progress lines) only with ``debug`` (``mpcai --debug demo ...``)."""
    print(f"\nFAILED: {who} {out.reason}")
    if debug:
        print(out.log[-4000:])
    else:
        print("(its log and traceback: mpcai --debug demo ...)")


def secagg(n_clients: int = 20, dim: int = 100_000, dropout: float = 0.1,
           threshold: int | None = None, timeout: float = 120.0, debug: bool = False) -> int:
    """Secure aggregation with server and clients as OS processes over TLS; prints progress.

    ``dropout`` is the fraction of clients whose processes are killed
    (SIGKILL, no goodbye) as soon as the server has finished the share_keys
    stage, so usually before they send their masked input (a small update
    may already be sent: then they drop at unmask).  They show up as
    dropouts; the exit code is 0 if the server's mean over the survivors
    matches the plaintext mean.
    """
    import signal
    import tempfile
    import threading
    import time
    from pathlib import Path

    from mpcai.errors import LaunchError, PartyFailed
    from mpcai.protocols import secure_aggregation as sa
    from mpcai.runtime.launcher import LaunchEvent, launch_local

    if n_clients < 3:
        raise InvalidInput("the demo needs at least 3 clients")
    if dim < 1:
        raise InvalidInput("dim must be >= 1")
    if not 0 <= dropout < 0.5:
        raise InvalidInput("dropout must be in [0, 0.5)")
    need = _demo_bytes(n_clients, dim)
    have = _available_bytes()
    if have is not None and need > have:
        raise InvalidInput(
            f"{n_clients} clients x {dim:,} values need about {need / 2**30:.1f} GiB here "
            f"(the updates, each client's masked copy in flight, the server's sum); "
            f"{have / 2**30:.1f} GiB are available: lower --dim or --clients")
    max_weight = 100
    # degree and threshold for the declared dropout (at least the default 10%) unless given
    config = {"n_clients": n_clients, "threshold": threshold, "clip": 1.0, "bits": 16,
              "max_weight": max_weight, "timeout": timeout / 2,
              "dropout_fraction": max(0.1, dropout)}
    cfg = sa.SecAggConfig(**config)  # refuses unsafe parameters before anything starts
    t = cfg.threshold
    rng = np.random.default_rng()  # demo data only; the protocol's randomness is its own
    updates = [_update(rng, dim) for _ in range(n_clients)]
    weights = [int(w) for w in rng.integers(1, max_weight + 1, n_clients)]
    n_drop = round(dropout * n_clients)
    dropping = sorted(int(c) for c in rng.choice(np.arange(1, n_clients + 1), n_drop,
                                                 replace=False))
    args: list[tuple] = [(config, None, 1, None, True)]
    for cid in range(1, n_clients + 1):
        # a dropping client goes silent before its masked input and waits to be killed,
        # so the kill never races a masked input already sent
        drop = ("masked_input", False, None, True) if cid in dropping else ()
        args.append((config, updates[cid - 1], weights[cid - 1], *drop))

    print(f"mpcai demo secagg: 1 server + {n_clients} clients as OS processes over mutual TLS")
    print(f"  model update: {dim:,} float32 per client, weights 1..{max_weight}, "
          f"threshold t={t}; clients {dropping} will be killed (SIGKILL) once the server "
          "has finished share_keys")
    print(f"  {sa.security_report(cfg).statement}\n")

    work = tempfile.TemporaryDirectory(prefix="mpcai-demo-")
    box: dict[str, object] = {}
    handles: dict[int, LaunchEvent] = {}

    def on_event(ev: LaunchEvent) -> None:
        if ev.name == "started" and ev.party_id in dropping:
            handles[ev.party_id] = ev

    def run() -> None:
        try:
            box["run"] = launch_local(
                n_clients + 1, "mpcai.protocols.secure_aggregation.simulation:process_party",
                args_per_party=args, timeout=timeout, workdir=work.name, return_failures=True,
                on_event=on_event)
        except Exception as exc:  # shown below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    log = Path(work.name) / "party-0.log"
    shown = 0
    killed: list[int] = []
    stages = ["advertise_keys", "share_keys", "masked_input", "unmask"]
    print(f"  {'stage':<16}{'progress':<24}{'clients':>9}{'time':>10}")
    while thread.is_alive() or shown < len(stages):
        lines = []
        if log.exists():
            lines = [ln.split() for ln in log.read_text(errors="replace").splitlines()
                     if ln.startswith("mpcai-progress")]
        for parts in lines[shown:]:
            _, stage, alive, expected, secs = parts
            bar = "#" * round(20 * int(alive) / max(1, n_clients))
            print(f"  {stage:<16}[{bar:<20}]  {alive:>4}/{expected:<4}{float(secs):>9.2f}s",
                  flush=True)
            if stage == sa.Stage.SHARE_KEYS.value and dropping and not killed:
                killed = [c for c in dropping if c in handles and handles[c].kill(signal.SIGKILL)]
                print(f"  {'':<16}killed clients {killed} (SIGKILL)", flush=True)
        shown = len(lines)
        if not thread.is_alive():
            break
        time.sleep(0.01)
    thread.join()
    wall = time.perf_counter() - t0
    if "error" in box:
        err = box["error"]
        print(f"\nFAILED: {err if not isinstance(err, LaunchError) else str(err)[:4000]}")
        work.cleanup()
        return 1
    run_result = box["run"]
    server_out = run_result[0]  # type: ignore[index]
    failures: dict[int, PartyFailed] = run_result.failures  # type: ignore[attr-defined]
    if isinstance(server_out, PartyFailed):
        _print_failed("the server", server_out, debug)
        work.cleanup()
        return 1
    survivors = [int(c) for c in server_out["survivors"]]
    clear = np.zeros(dim, dtype=np.float64)  # the plaintext weighted mean, one update at a time
    for c in survivors:
        clear += weights[c - 1] * updates[c - 1].astype(np.float64)
    clear /= sum(weights[c - 1] for c in survivors)
    err = float(np.max(np.abs(server_out["mean"] - clear)))
    step = 2.0 * cfg.clip / cfg.levels
    stats = run_result.stats  # type: ignore[attr-defined]
    client_bytes = [s.bytes_sent for i, s in enumerate(stats[1:], start=1) if i not in failures]
    print("\nSummary")
    gone = {k: [int(c) for c in v] for k, v in server_out["dropped"].items() if len(v)}
    print(f"  survivors: {len(survivors)} of {n_clients}; dropped: {gone or 'none'}")
    for cid, failure in failures.items():
        if cid in killed and failure.signal == "SIGKILL":
            print(f"  client {cid}: process killed (SIGKILL) by the demo -> a dropout")
        else:
            print(f"  client {cid} {failure.reason}")
    print(f"  weighted mean over survivors: max error vs plaintext {err:.2e} "
          f"(quantisation step {step:.1e}) -> {'OK' if err <= step else 'FAIL'}")
    print("  time per stage (server): " + ", ".join(
        f"{k} {v:.2f}s" for k, v in server_out["stage_seconds"].items()))
    print(f"  bytes sent per client: {np.mean(client_bytes) / 1e6:.2f} MB "
          f"(plain update {4 * dim / 1e6:.2f} MB); server sent {stats[0].bytes_sent / 1e6:.2f} MB,"
          f" received {stats[0].bytes_received / 1e6:.2f} MB")
    print(f"  wall time {wall:.1f}s including process start-up and TLS handshakes")
    work.cleanup()
    return 0 if err <= step else 1


def inference(parties: int = 2, batch: int = 360, timeout: float = 120.0,
              provider: str = "dealer", debug: bool = False) -> int:
    """Private inference on sklearn's digits with the parties as OS processes over TLS.

    Two compute parties (party 0 holds the images, party 1 the model) and a
    dealer (party 2; ``provider="dealerless"``: no dealer, the two make their
    correlations by oblivious transfer) evaluate an MLP 64-32-10 on the test split; party 0
    learns the logits.  Prints a line per layer and a summary: agreement with
    the plaintext labels, the largest logit error, rounds and bytes per party,
    time per layer.  Exit code 0 if every label agrees.
    """
    import tempfile
    import threading
    import time
    import warnings
    from pathlib import Path

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    from mpcai.errors import LaunchError, PartyFailed
    from mpcai.protocols import inference as inf
    from mpcai.runtime.launcher import launch_local

    if parties not in (2, 3):
        raise InvalidInput("--parties must be 2 (with a dealer) or 3 (replicated, no dealer)")
    if provider not in ("dealer", "dealerless") or (provider == "dealerless" and parties != 2):
        raise InvalidInput("--provider must be 'dealer' or 'dealerless' (with --parties 2)")
    dealerless = provider == "dealerless"
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16, y, test_size=0.2, random_state=0, stratify=y)
    if not 1 <= batch <= len(xte):
        raise InvalidInput(f"--batch must be in 1..{len(xte)}")
    xte, yte = xte[:batch], yte[:batch]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((32,), max_iter=1000, random_state=0).fit(xtr, ytr)
    model = inf.from_sklearn(clf)
    plain = model.logits(xte)
    spec = inf.ModelSpec.of(model)
    config = {"frac_bits": 12, "input_bound": 1.0}
    roles = {"compute": [0, 1], "dealer": None if dealerless else 2, "data_owner": 0,
             "model_owner": 1}
    layers = [[lin.weight, lin.bias] for lin in model.linears]
    if dealerless:
        common = (roles, list(spec.dims), batch, config)
        function = "mpcai.protocols.inference.simulation:process_party"
        args = [(*common, None, xte, True), (*common, layers, None, False)]
        third = "no third party: the two make their correlations by oblivious transfer"
        print("mpcai demo inference: 2 compute parties, no dealer, as OS processes over "
              "mutual TLS")
    elif parties == 2:
        common = (roles, list(spec.dims), batch, config)
        function = "mpcai.protocols.inference.simulation:process_party"
        args = [
            (*common, None, xte, True),
            (*common, layers, None, False),
            (*common, None, None, False),
        ]
        third = "party 2 deals correlated randomness"
        print("mpcai demo inference: 2 compute parties + a dealer as OS processes over mutual TLS")
    else:
        common3 = (list(spec.dims), batch, config)
        function = "mpcai.protocols.inference.simulation:process_party3"
        args = [(*common3, None, xte, True), (*common3, layers, None), (*common3, None, None)]
        third = "party 2 computes with them (replicated shares, no dealer)"
        print("mpcai demo inference: 3 compute parties on replicated shares as OS processes "
              "over mutual TLS")
    print(f"  party 0 holds {batch} digit images (8x8), party 1 an MLP "
          f"{'-'.join(map(str, spec.dims))} trained on the rest (plaintext accuracy "
          f"{(model.predict(xte) == yte).mean():.4f}); {third}")
    print("  party 0 learns the logits; party 1 learns nothing about the images\n")
    work = tempfile.TemporaryDirectory(prefix="mpcai-demo-")
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["run"] = launch_local(
                len(args), function, args_per_party=args,
                timeout=timeout, workdir=work.name, return_failures=True)
        except Exception as exc:  # shown below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    log = Path(work.name) / "party-0.log"
    shown = 0
    print(f"  {'layer':<10}{'time':>10}{'sent':>12}")
    while True:
        alive = thread.is_alive()
        lines = []
        if log.exists():
            lines = [ln.split() for ln in log.read_text(errors="replace").splitlines()
                     if ln.startswith("mpcai-progress")]
        for parts in lines[shown:]:
            _, name, secs, sent = parts
            print(f"  {name:<10}{float(secs) * 1e3:>8.1f}ms{int(sent) / 1e3:>9.1f} kB", flush=True)
        shown = len(lines)
        if not alive:
            break
        time.sleep(0.01)
    thread.join()
    wall = time.perf_counter() - t0
    if "error" in box:
        err = box["error"]
        print(f"\nFAILED: {err if not isinstance(err, LaunchError) else str(err)[:4000]}")
        work.cleanup()
        return 1
    result = box["run"]
    outs = list(result)  # type: ignore[call-overload]
    for i, out in enumerate(outs):
        if isinstance(out, PartyFailed):
            _print_failed(f"party {i}", out, debug)
            work.cleanup()
            return 1
    logits = outs[0]["logits"]
    labels = model.labels(logits)
    agree = float((labels == model.predict(xte)).mean())
    stats = result.stats  # type: ignore[attr-defined]
    print("\nSummary")
    print(f"  labels agreeing with the plaintext model: {agree:.4f} "
          f"({round(agree * batch)}/{batch}); accuracy {(labels == yte).mean():.4f}")
    print(f"  max |logit error| vs plaintext: {float(np.max(np.abs(logits - plain))):.2e}")
    print(f"  truncation failure probability bound: {outs[1]['failure_probability']:.1e}")
    if dealerless:
        for i, name in enumerate(("compute 0 + data owner", "compute 1 + model owner")):
            o = outs[i]
            print(f"  party {i} ({name}): offline {o['offline_seconds']:.2f} s (OT set-up, "
                  f"extension, mask products, AND triples), online "
                  f"{o['online_seconds'] * 1e3:.1f} ms, {o['online_bytes'] / 1e3:.1f} kB sent "
                  f"online, {stats[i].bytes_sent / 1e6:.2f} MB sent in all")
        rounds = 1 + max(outs[0]["online_rounds"], outs[1]["online_rounds"])
        print(f"  online rounds: {rounds} (masked input, a comparison "
              "tree and a multiplexer per ReLU, next-layer opening, logits)")
        print(f"  offline + online at party 0: "
              f"{outs[0]['offline_seconds'] + outs[0]['latency_seconds']:.2f} s")
    elif parties == 2:
        for i, name in enumerate(("compute 0 + data owner", "compute 1 + model owner")):
            o = outs[i]
            print(f"  party {i} ({name}): online {o['online_seconds'] * 1e3:.1f} ms, "
                  f"{o['online_bytes'] / 1e3:.1f} kB sent online, "
                  f"{stats[i].bytes_sent / 1e6:.2f} MB sent in all")
        print("  online rounds: 4 (masked input, ReLU opening, next-layer opening, logits)")
        print(f"  party 2 (dealer): {stats[2].bytes_sent / 1e6:.2f} MB sent offline, received "
              f"{stats[2].bytes_received} B")
        print("  online time per layer (party 0): " + ", ".join(
            f"{name} {secs * 1e3:.1f} ms" for name, secs, _b, _r in outs[0]["layers"]))
    else:
        names = ("compute + data owner", "compute + model owner", "compute")
        for i, name in enumerate(names):
            o = outs[i]
            print(f"  party {i} ({name}): online {o['online_seconds'] * 1e3:.1f} ms, "
                  f"{o['online_bytes'] / 1e3:.1f} kB sent online, "
                  f"{stats[i].bytes_sent / 1e3:.1f} kB sent in all (inputs included), "
                  f"{o['online_rounds']} rounds")
        print("  online time per layer (party 0): " + ", ".join(
            f"{name} {secs * 1e3:.1f} ms" for name, secs, _b, _r in outs[0]["layers"]))
    print(f"  latency at party 0 (masked input sent -> logits decoded): "
          f"{outs[0]['latency_seconds'] * 1e3:.1f} ms")
    print(f"  wall time {wall:.1f}s including process start-up and TLS handshakes")
    work.cleanup()
    return 0 if agree == 1.0 else 1


def inference_he(batch: int = 360, timeout: float = 300.0, debug: bool = False) -> int:
    """CKKS client-server inference on sklearn's digits: two OS processes over TLS.

    The server (party 1) holds an MLP 64-32-10 with square activations
    (:func:`mpcai.protocols.inference.he.retrain_square` on the training
    split); the client (party 0) encrypts ``batch`` test images under its own
    key, 32 per ciphertext, and decrypts the logits.  Prints each round
    trip's latency, the bytes each way and the accuracy against the same
    model in plaintext.  Exit code 0 if every label agrees.
    """
    import tempfile
    import threading
    import time
    from pathlib import Path

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from mpcai.errors import PartyFailed
    from mpcai.protocols.inference import he
    from mpcai.runtime.launcher import launch_local

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16, y, test_size=0.2, random_state=0, stratify=y)
    if not 1 <= batch <= len(xte):
        raise InvalidInput(f"--batch must be in 1..{len(xte)}")
    xte, yte = xte[:batch], yte[:batch]
    fit = he.retrain_square((32,), xtr, ytr, epochs=60)
    model = fit.model
    plan = he.plan(model)
    plain = model.predict(xte)
    print("mpcai demo inference --he: a client and a server as OS processes over mutual TLS")
    print(f"  party 0 (client) holds {batch} digit images and a fresh CKKS key ({plan.preset}, "
          f"{plan.capacity} images per ciphertext);")
    print("  party 1 (server) holds an MLP 64-32-10 with square activations, retrained in "
          f"plaintext (accuracy {float(np.mean(plain == yte)):.4f})")
    print("  the server never sees the images or the logits; the client learns the logits\n")
    work = tempfile.TemporaryDirectory(prefix="mpcai-demo-he-")
    box: dict[str, object] = {}
    fn = "mpcai.protocols.inference.he:process_party"
    args = [("client", None, xte, None, True), ("server", he.model_layers(model))]

    def run() -> None:
        try:
            box["run"] = launch_local(2, fn, args_per_party=args, timeout=timeout,
                                      workdir=work.name, return_failures=True)
        except Exception as exc:  # shown below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    log = Path(work.name) / "party-0.log"
    shown = 0
    print(f"  {'round trip':<12}{'images':>8}{'latency':>12}{'per image':>12}")
    while True:
        alive = thread.is_alive()
        lines = []
        if log.exists():
            lines = [ln.split() for ln in log.read_text(errors="replace").splitlines()
                     if ln.startswith("mpcai-progress")]
        for parts in lines[shown:]:
            _, i, rows, secs = parts
            print(f"  {int(i):<12}{int(rows):>8}{float(secs) * 1e3:>10.1f}ms"
                  f"{float(secs) * 1e3 / int(rows):>10.2f}ms", flush=True)
        shown = len(lines)
        if not alive:
            break
        time.sleep(0.01)
    thread.join()
    wall = time.perf_counter() - t0
    if "error" in box:
        print(f"\nFAILED: {str(box['error'])[:4000]}")
        work.cleanup()
        return 1
    outs = list(box["run"])  # type: ignore[call-overload]
    for i, out in enumerate(outs):
        if isinstance(out, PartyFailed):
            _print_failed(f"party {i}", out, debug)
            work.cleanup()
            return 1
    c = outs[0]
    labels = np.asarray(c["labels"])
    agree = float(np.mean(labels == plain))
    err = float(np.max(np.abs(np.asarray(c["outputs"]) - model.logits(xte))))
    lat = np.asarray(c["latency_seconds"])
    print("\nSummary")
    print(f"  labels agreeing with the plaintext model: {agree:.4f} ({round(agree * batch)}/"
          f"{batch}); accuracy {float(np.mean(labels == yte)):.4f} (plaintext "
          f"{float(np.mean(plain == yte)):.4f}); max |logit error| {err:.1e}")
    print(f"  per image: {lat.sum() / batch * 1e3:.2f} ms amortised, round trips of "
          f"{len(lat)} ciphertexts, median {np.median(lat) * 1e3:.1f} ms each")
    print(f"  client -> server: {c['setup_bytes'] / 1e6:.1f} MB once (public context: "
          f"relinearisation + {len(plan.products)} products' Galois keys), then "
          f"{c['query_bytes'] / batch / 1e3:.1f} kB per image")
    print(f"  server -> client: {c['result_bytes'] / batch / 1e3:.1f} kB per image "
          f"(plan {c['plan_bytes']} B)")
    print(f"  client key generation {c['keygen_seconds']:.2f}s; server setup "
          f"{outs[1]['setup_seconds']:.2f}s; wall time {wall:.1f}s including process start-up "
          "and TLS handshakes")
    work.cleanup()
    return 0 if agree == 1.0 else 1
