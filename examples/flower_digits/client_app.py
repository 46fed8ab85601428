"""The ClientApp: local training on this node's digits, plus the secure-aggregation mod.

The only change secure aggregation needs on a client is the mod::

    secure_app = ClientApp(mods=[secagg_mod])

(here ``mods=[drop_mod, secagg_mod]``: :func:`drop_mod` only emulates the
round's dropouts, which simulated nodes never do by themselves).
"""

from __future__ import annotations

import task
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from mpcai.integrations.flower import RECORD_KEY, make_secagg_mod, secagg_mod

#: the secure-aggregation stage in which a dropping client leaves: the server asks for
#: the masked inputs after the keys were advertised and their shares exchanged, so the
#: survivors must unmask around a client whose pairwise masks are already in play
DROP_STAGE = "masked_input"


class DroppedOut(RuntimeError):
    """Raised by :func:`drop_mod`; Flower turns it into an error reply (a dropout)."""


def _ids(context: Context) -> tuple[int, int]:
    """``(partition id, number of partitions)`` of this simulated node."""
    return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])


def _server_round(msg: Message) -> int:
    """The round of a train message: the strategy's ``server-round`` in its config, or
    (for a secure-aggregation stage message) its ``group_id``, which is the round."""
    config = msg.content.config_records.get("config")
    if config is not None and "server-round" in config:
        return int(config["server-round"])  # type: ignore[arg-type]
    return int(msg.metadata.group_id)


def drop_mod(msg: Message, context: Context, call_next: object) -> Message:
    """Emulate this round's dropouts (:func:`task.dropping`): a dropping client fails
    its plain train message, or, under secure aggregation, the masked-input stage
    (after the key exchange); every other message passes through."""
    if msg.metadata.message_type.split(".")[0] == "train" and msg.has_content():
        pid, n = _ids(context)
        server_round = _server_round(msg)
        if pid in task.dropping(server_round, n):
            rec: ConfigRecord | None = msg.content.config_records.get(RECORD_KEY)
            stage = None if rec is None else rec.get("stage")
            if stage is None or stage == DROP_STAGE:
                raise DroppedOut(f"client {pid} drops out of round {server_round}"
                                 + ("" if stage is None else f" at stage {stage!r}"))
    return call_next(msg, context)  # type: ignore[operator]


def train(msg: Message, context: Context) -> Message:
    """A few epochs of local training from the global model; the reply holds the new
    model and ``num-examples`` (this client's number of training rows, its weight)."""
    pid, n = _ids(context)
    x, y = task.partition(pid, n)
    w, b = task.unpack(msg.content["arrays"])
    server_round = int(msg.content["config"]["server-round"])
    w, b, loss = task.train(w, b, x, y, seed=task.batch_seed(server_round, pid))
    return Message(RecordDict({"arrays": task.pack(w, b),
                               "metrics": MetricRecord({"num-examples": len(y),
                                                        "train-loss": loss})}),
                   reply_to=msg)


def _client_app(mods: list) -> ClientApp:
    app = ClientApp(mods=mods)
    app.train()(train)
    return app


#: plain FedAvg: the update goes to the server in the clear
plain_app = _client_app([drop_mod])


def make_secure_app(transcripts: str | None = None) -> ClientApp:
    """FedAvg over secure aggregation; with ``transcripts``, every node writes its audit
    transcript of each round there (``<transcripts>/<session>/party-<id>.jsonl``)."""
    mod = secagg_mod if transcripts is None else make_secagg_mod(transcript=transcripts)
    return _client_app([drop_mod, mod])


#: FedAvg over secure aggregation: the one-line change is ``mods=[..., secagg_mod]``
secure_app = make_secure_app()
#: the ClientApp of ``flwr run`` (pyproject.toml)
app = secure_app
