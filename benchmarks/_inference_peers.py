"""The private-inference peers (SPU, CrypTen, MPyC), each in its own virtual environment.

The peers cannot share our environment (``spu==0.9.5`` is a CPython 3.11 wheel that pins
``numpy<2`` and ``jax<=0.4.34``; CrypTen needs torch), so each runs in a venv of its own,
made on first use by :func:`ensure_venv` under ``~/.cache/mpcai/peers/<name>-<version>``
(or the folder given as ``cache`` / ``$MPCAI_PEER_VENVS``), as a child process
``<venv>/bin/python -P _peer_<name>.py INPUT OUTPUT`` that never imports mpcai.
:func:`run_peer` hands it the weights and the batch (``_inference_workload.write_inputs``:
JSON lists of float64) and turns what it measured into a record.

Peers (:data:`PEERS`): ``spu-semi2k`` (SPU SEMI2K, 2 nodes), ``spu-aby3`` (SPU ABY3, 3
nodes), ``spu-cheetah`` (SPU CHEETAH, 2 nodes and no dealer: OT and HE between them),
``crypten`` (CrypTen, 2 parties + its TTP dealer), ``mpyc`` (MPyC Shamir, 3 local
parties).  How each one is run, timed and counted is in its script's docstring.

``python -m mpcai.benchmarks._inference_peers --peer spu-semi2k --batch 100`` prints the
record of one peer as JSON (``--peer all`` runs every peer).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._inference_workload import Workload, write_inputs
from ._simd import cpu_model

HERE = Path(__file__).resolve().parent
#: environment variable naming the folder of the peers' venvs
CACHE_ENV = "MPCAI_PEER_VENVS"
#: the file that marks a venv as complete (it holds the install steps it ran)
MARKER = ".mpcai-peer-complete"


@dataclass(frozen=True)
class VenvSpec:
    """One peer venv: its folder name and the ``pip install`` steps, in order."""

    name: str
    version: str
    steps: tuple[tuple[str, ...], ...]
    #: a Python snippet run in the venv after the install; raises if it is unusable
    check: str


VENVS: dict[str, VenvSpec] = {
    "spu": VenvSpec(
        "spu",
        "0.9.5",
        (("spu==0.9.5", "jax==0.4.34", "jaxlib==0.4.34", "numpy==1.26.4"),),
        "import spu, spu.utils.frontend, jax; print(spu.__version__, jax.__version__)",
    ),
    # torch without its dependencies (a CUDA build would bring nvidia-* wheels), then
    # its pure-Python dependencies, then CrypTen itself without its (heavy, unused)
    # dependencies (torchvision, onnx, pandas, tensorboard, scipy, sklearn)
    "crypten": VenvSpec(
        "crypten",
        "0.4.1",
        (
            ("--no-deps", "torch==2.13.0"),
            (
                "filelock",
                "typing-extensions",
                "sympy",
                "networkx",
                "jinja2",
                "fsspec",
                "numpy==2.4.6",
                "pyyaml==6.0.4",
                "omegaconf==2.4.0",
            ),
            ("--no-deps", "crypten==0.4.1"),
        ),
        "import torch; v = torch.__version__; assert torch.version.cuda is None, "
        "f'torch {v} is a CUDA build'; print(v)",
    ),
    "mpyc": VenvSpec(
        "mpyc",
        "0.11",
        (("mpyc==0.11", "numpy==2.4.6", "gmpy2==2.3.2"),),
        "import mpyc, gmpy2; print(mpyc.__version__)",
    ),
}


@dataclass(frozen=True)
class Peer:
    """A peer as benchmarked: its venv, child script and protocol settings."""

    venv: str
    script: str
    protocol: str
    parties: int


PEERS: dict[str, Peer] = {
    "spu-semi2k": Peer("spu", "_peer_spu.py", "SEMI2K", 2),
    "spu-aby3": Peer("spu", "_peer_spu.py", "ABY3", 3),
    "spu-cheetah": Peer("spu", "_peer_spu.py", "CHEETAH", 2),
    "crypten": Peer("crypten", "_peer_crypten.py", "crypten-ttp", 2),
    "mpyc": Peer("mpyc", "_peer_mpyc.py", "mpyc-shamir-3", 3),
}


def _log(msg: str) -> None:
    print(f"[mpcai peers] {msg}", file=sys.stderr, flush=True)


def cache_dir(cache: str | Path | None = None) -> Path:
    """The folder of the peers' venvs: ``cache``, else ``$MPCAI_PEER_VENVS``, else
    ``~/.cache/mpcai/peers``."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mpcai" / "peers"


def _base_python() -> str:
    """A CPython 3.11 to make the venvs with (SPU ships cp311 wheels only)."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if found is None:
        raise RuntimeError(
            "the peer venvs need CPython 3.11 (spu==0.9.5 is a cp311 wheel); no python3.11 on PATH"
        )
    return found


def _spec(peer: str) -> VenvSpec:
    if peer in PEERS:
        return VENVS[PEERS[peer].venv]
    if peer in VENVS:
        return VENVS[peer]
    raise ValueError(f"unknown peer {peer!r}; known: {sorted(PEERS)}")


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    env["PYTHONSAFEPATH"] = "1"
    return env


def ensure_venv(peer: str, cache: str | Path | None = None) -> Path:
    """The venv of ``peer`` (a name of :data:`PEERS` or :data:`VENVS`), made if missing.

    ``python -m venv`` then the pinned ``pip install`` steps; progress goes to stderr.
    A venv counts as complete when its marker file holds the same steps; an incomplete
    one (an install that stopped) is removed and made again.  Returns the venv folder.
    """
    spec = _spec(peer)
    root = cache_dir(cache) / f"{spec.name}-{spec.version}"
    marker = root / MARKER
    want = {"steps": [list(s) for s in spec.steps]}
    if marker.exists():
        try:
            if json.loads(marker.read_text()).get("steps") == want["steps"]:
                return root
        except (OSError, ValueError):
            pass
    if root.exists():
        _log(f"{root}: incomplete or outdated, making it again")
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    env = _clean_env()
    t0 = time.monotonic()
    _log(f"creating {root} ({_base_python()} -m venv)")
    subprocess.run(
        [_base_python(), "-m", "venv", str(root)], check=True, env=env, stdout=sys.stderr
    )
    py = str(root / "bin" / "python")
    for step in spec.steps:
        _log(f"{spec.name}: pip install {' '.join(step)}")
        subprocess.run(
            [py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *step],
            check=True,
            env=env,
            stdout=sys.stderr,
        )
    res = subprocess.run(
        [py, "-P", "-c", spec.check],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    if res.returncode != 0:
        raise RuntimeError(f"{root}: the installed peer does not import:\n{res.stderr[-3000:]}")
    frozen = subprocess.run(
        [py, "-m", "pip", "freeze", "--disable-pip-version-check"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.split()
    marker.write_text(
        json.dumps(
            {
                **want,
                "check": res.stdout.strip(),
                "freeze": frozen,
                "python": sys.version.split()[0],
            },
            indent=1,
        )
        + "\n"
    )
    _log(f"{root} ready in {time.monotonic() - t0:.0f} s ({res.stdout.strip()})")
    return root


def thread_env(threads: int) -> dict[str, str]:
    """The environment variables that give a peer ``threads`` threads per party."""
    n = str(int(threads))
    return {
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "NUMEXPR_NUM_THREADS": n,
        "VECLIB_MAXIMUM_THREADS": n,
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
        f" intra_op_parallelism_threads={n}",
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": n,
        "JAX_PLATFORMS": "cpu",
    }


def run_peer(
    peer: str,
    workload: Workload,
    x: np.ndarray,
    *,
    reps: int = 5,
    threads: int = 1,
    timeout: float = 900,
    y: np.ndarray | None = None,
    cache: str | Path | None = None,
) -> dict[str, Any]:
    """Run ``peer`` on the batch ``x`` (rows of 64 features) and return its record.

    The record: peer, version, protocol, parties, batch, threads (and the variables set
    for them), ``warmup_s`` (the first run), ``times_s`` (each later run: online
    inference only), ``median_s``, ``bytes_sent_per_party``, ``rounds`` (None where the
    peer counts none), ``label_agreement`` (argmax of the peer's logits vs argmax of
    ``workload.plain_logits(x)``, over every run), ``max_abs_logit_error`` (vs
    ``plain_logits``), ``accuracy`` (vs ``y`` when given), ``failures`` (runs that
    failed or gave non-finite logits; a failed child fails all ``1 + reps`` runs, never
    retried) and ``error``; plus the peer's own notes (fixed point, transport, timing).
    """
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; known: {sorted(PEERS)}")
    p = PEERS[peer]
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    ref = workload.plain_logits(x)
    rec: dict[str, Any] = {
        "peer": peer,
        "peer_version": VENVS[p.venv].version,
        "protocol": p.protocol,
        "parties": p.parties,
        "batch": int(x.shape[0]),
        "model": workload.shape,
        "threads": int(threads),
        "thread_env": thread_env(threads),
        "reps": int(reps),
        "warmup_s": None,
        "times_s": [],
        "median_s": None,
        "bytes_sent_per_party": None,
        "rounds": None,
        "label_agreement": None,
        "max_abs_logit_error": None,
        "failures": 0,
        "error": None,
    }
    try:
        venv = ensure_venv(peer, cache)
    except Exception as exc:
        rec.update(failures=reps + 1, error=f"venv: {type(exc).__name__}: {exc}")
        return rec
    with tempfile.TemporaryDirectory(prefix=f"mpcai-{peer}-") as tmp:
        inp, out = Path(tmp) / "input.json", Path(tmp) / "output.json"
        write_inputs(
            inp,
            workload,
            x,
            protocol=p.protocol,
            reps=int(reps),
            threads=int(threads),
            timeout=float(timeout),
        )
        env = {**_clean_env(), **thread_env(threads)}
        cmd = [str(venv / "bin" / "python"), "-P", str(HERE / p.script), str(inp), str(out)]
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the child's own parties with it
            log, _ = proc.communicate()
            rec.update(
                failures=reps + 1, error=f"timeout after {timeout:.0f} s:\n{(log or '')[-3000:]}"
            )
            return rec
        finally:
            try:  # parties the child started and left behind
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        rec["wall_s"] = time.monotonic() - t0
        if proc.returncode != 0 or not out.exists():
            rec.update(failures=reps + 1, error=f"exit {proc.returncode}:\n{(log or '')[-3000:]}")
            return rec
        res = json.loads(out.read_text())
    logits = [np.asarray(v, dtype=np.float64) for v in res.pop("logits")]
    ok = [v.shape == ref.shape and bool(np.all(np.isfinite(v))) for v in logits]
    good = [v for v, k in zip(logits, ok, strict=True) if k]
    times = [float(t) for t, k in zip(res.pop("times_s"), ok[1:], strict=True) if k]
    labels = np.argmax(ref, axis=1)
    rec.update({k: v for k, v in res.items() if k not in ("warmup_s",)})
    rec.update(
        warmup_s=float(res["warmup_s"]) if ok[0] else None,
        times_s=times,
        median_s=float(np.median(times)) if times else None,
        failures=int(len(ok) - sum(ok)),
        label_agreement=(
            float(np.mean([np.mean(np.argmax(v, axis=1) == labels) for v in good]))
            if good
            else None
        ),
        max_abs_logit_error=(float(max(np.max(np.abs(v - ref)) for v in good)) if good else None),
    )
    if y is not None and good:
        rec["accuracy"] = float(np.mean(np.argmax(good[-1], axis=1) == np.asarray(y)))
        rec["plain_accuracy"] = float(np.mean(labels == np.asarray(y)))
    sent = rec.get("bytes_sent_per_party")
    rec["max_bytes_sent_per_party"] = max(sent) if sent else None
    return rec


def main(argv: list[str] | None = None) -> int:
    """``--peer NAME|all --batch N [--reps R] [--threads T] [--cache DIR]``: JSON records."""
    import argparse
    import platform

    from ._inference_workload import digits_mlp

    ap = argparse.ArgumentParser(prog="python -m mpcai.benchmarks._inference_peers")
    ap.add_argument("--peer", default="spu-semi2k", choices=[*PEERS, "all"])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument(
        "--cache", default=None, help=f"venv folder (default ${CACHE_ENV} or ~/.cache/mpcai/peers)"
    )
    ns = ap.parse_args(argv)
    w = digits_mlp()
    if not 1 <= ns.batch <= len(w.x_test):
        ap.error(f"--batch must be in 1..{len(w.x_test)}")
    x, y = w.x_test[: ns.batch], w.y_test[: ns.batch]
    peers = list(PEERS) if ns.peer == "all" else [ns.peer]
    recs = [
        run_peer(p, w, x, reps=ns.reps, threads=ns.threads, timeout=ns.timeout, y=y, cache=ns.cache)
        for p in peers
    ]
    for r in recs:
        r["cpu"] = cpu_model()
        r["machine"] = platform.machine()
        r["workload"] = w.meta
    print(json.dumps(recs[0] if len(recs) == 1 else recs, indent=1))
    return 0 if all(r["failures"] == 0 for r in recs) else 1



if __name__ == "__main__":
    sys.exit(main())
