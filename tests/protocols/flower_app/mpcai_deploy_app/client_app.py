"""The ClientApp: ``received + delta`` with ``num-examples`` = the partition's weight,
behind :data:`mpcai.integrations.flower.secagg_mod` (with audit transcripts if the run
config's ``transcript-dir`` is set).

``stall_mod`` (outermost) makes one node a dropout on cue: in round ``kill-round``, the
node of partition ``kill-partition`` writes a marker file when the masked-input message
reaches it (its keys and its key shares are with the server by then) and then never
answers; the test watching for the marker SIGKILLs the node.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from mpcai.integrations.flower import RECORD_KEY, make_secagg_mod, secagg_mod

from .task import delta, weight

# the reason a client leaves a round goes to mpcai's log only: into the SuperNode's log
_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
for _name in ("mpcai", "mpcai_deploy_app"):
    logging.getLogger(_name).addHandler(_handler)
    logging.getLogger(_name).setLevel(logging.INFO)
_log = logging.getLogger("mpcai_deploy_app")

#: how long the stalled node waits to be killed before it gives up (an error reply)
STALL_SECONDS = 120.0


def marker_path(marker_dir: str, server_round: int, partition: int) -> Path:
    """The file the stalled node writes (the test computes the same name)."""
    return Path(marker_dir) / f"stalled-round{server_round}-partition{partition}.json"


def _round_of(msg: Message) -> int:
    """The message's round: its group id (the stages' messages have one; FedAvg's train
    message may not), else its config's ``server-round``, else 0."""
    if msg.metadata.group_id.isdigit():
        return int(msg.metadata.group_id)
    config = msg.content.config_records.get("config")
    return int(config["server-round"]) if config and "server-round" in config else 0


def _digest(context: Context) -> str:
    """A short fingerprint of the node's secure-aggregation state, for the log: each
    stage should hold the state the previous one left (Flower stores a ClientApp's
    Context after its reply has gone, so a late store would show here)."""
    held = context.state.config_records.get(RECORD_KEY)
    if held is None:
        return "none"
    return hashlib.sha256(bytes(held["state"])).hexdigest()[:12]


def stall_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """Announce and stall at the masked-input stage of the configured round."""
    run = context.run_config
    recs = msg.content.config_records if msg.has_content() else {}
    if RECORD_KEY not in recs:
        return call_next(msg, context)
    stage = recs[RECORD_KEY].get("stage")
    rnd = _round_of(msg)
    pid = int(context.node_config["partition-id"])
    _log.info("partition %d, round %d, stage %s: round state held %s", pid, rnd, stage,
              _digest(context))
    if stage == "masked_input":
        if rnd == int(run["kill-round"]) and pid == int(run["kill-partition"]):
            path = marker_path(str(run["marker-dir"]), rnd, pid)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"round": rnd, "partition": pid,
                                       "node-id": context.node_id, "pid": os.getpid()}))
            tmp.replace(path)  # the test never reads half a file
            time.sleep(STALL_SECONDS)
            raise RuntimeError("this node was meant to be killed, and was not")
    reply = call_next(msg, context)
    _log.info("partition %d, round %d, stage %s: round state left %s", pid, rnd, stage,
              _digest(context))
    return reply


_with_transcripts: dict[str, Any] = {}


def secure_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """``secagg_mod``, writing this node's audit transcripts under the run config's
    ``transcript-dir`` (``<dir>/node-<partition>``) if it names one.  Every message
    starts a fresh ClientApp process: the transcript lives on disk, its head in the
    node's Context."""
    root = str(context.run_config.get("transcript-dir", ""))
    if not root:
        return secagg_mod(msg, context, call_next)
    path = str(Path(root) / f"node-{int(context.node_config['partition-id'])}")
    if path not in _with_transcripts:
        _with_transcripts[path] = make_secagg_mod(transcript=path)
    return _with_transcripts[path](msg, context, call_next)


app = ClientApp(mods=[stall_mod, secure_mod])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """The received model plus this partition's change for the round."""
    pid = int(context.node_config["partition-id"])
    rnd = int(msg.content["config"]["server-round"])
    w = msg.content["arrays"]["w"].numpy()
    new = Array.from_numpy_ndarray((w + delta(pid, rnd, w.size)).astype(w.dtype))
    return Message(RecordDict({"arrays": ArrayRecord({"w": new}),
                               "metrics": MetricRecord({"num-examples": weight(pid)})}),
                   reply_to=msg)
