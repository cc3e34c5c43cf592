"""Peer benchmark: the airbench94 peer (peer_airbench.py) against the template's recipe, in
one process, on the same folds, threads and per-fit time budget.

    python benchmarks/bench_peer.py --calibrate     # once, on the idle machine: epoch budget
    python benchmarks/bench_peer.py                 # 5 seeds x 2 trainers (~2.5 h on 2 CPUs)
    python benchmarks/bench_peer.py --seeds 1 --peer-epochs 1 --template-epochs 1 \\
        --limit-batches 3                           # smoke run

Seed s holds out fold s of ``cifar_moe.data.folds`` (10 disjoint folds of the training
images; folds 0-6 only, docs/protocols/selection.md) and seeds both trainers, so each fold
gives a paired comparison. The template fits through the real CLI
(``cli_main(["fit", ...])``); its score is ``val/acc`` of a ``validate`` after the fit (the
final epoch, the recipe's TTA), the peer's its TTA accuracy on the fold. Wall time per fit:
training plus scoring the fold (``--test`` scoring excluded). Each fit's result is one JSON
under ``--out``; a rerun reuses those whose settings match. Epoch defaults come from
``peer_budget.json`` (``--calibrate``), else 120 (peer) and the config's max_epochs.
"""

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch
import yaml
from _checkout import DEFAULT_SLICE_DIR
from _machine import machine_facts
from peer_airbench import train_peer
from peer_stats import mean_sd, means_line, paired_line, summary_line
from testset_ledger import LEDGER, record_fit_scoring

from cifar_moe.cli import cli_main
from cifar_moe.core.atomic_files import write_json_atomic
from cifar_moe.core.constants import BATCH_FOLDER
from cifar_moe.data import read_split
from cifar_moe.data.folds import fold_split
from cifar_moe.runs.study.inputs import config_hashes, data_files_hash

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
BUDGET_FILE = HERE / "peer_budget.json"
BUDGET_S = 15 * 60  # per fit
MAX_SEEDS = 7  # seed s holds out fold s; folds 7-9 are the routing study's (protocol)
PEER_EPOCHS = 120  # until calibrated


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=DEFAULT_SLICE_DIR, help="folder holding "
                   f"{BATCH_FOLDER}/ (default $CIFAR_MOE_DATA, else the slice)")
    p.add_argument("--seeds", type=int, default=5, help=f"seeds 0..N-1 (N <= {MAX_SEEDS})")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peer-epochs", type=int)
    p.add_argument("--template-epochs", type=int)
    p.add_argument("--template-config", default="configs/slice.yaml")
    p.add_argument("--template-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra CLI setting for the template fit (repeatable)")
    p.add_argument("--test", action="store_true", help="also score the test images once per fit")
    p.add_argument("--out", default=str(HERE / "peer_results"),
                   help="one JSON per finished fit (committed: a rerun anywhere resumes)")
    p.add_argument("--keep-models", metavar="DIR", help="keep each template fit's final "
                   "model and config in DIR, so that an adopted recipe's test scoring needs "
                   "no new fits (benchmarks/score_kept.py)")
    p.add_argument("--trainers", choices=("both", "peer", "template"), default="both",
                   help="fit only one trainer (its results are kept for a later 'both' run)")
    p.add_argument("--ledger", default=str(LEDGER), help="the ledger each --test scoring is "
                   "added to (docs/test_set_uses.md; the README's count follows it)")
    p.add_argument("--limit-batches", type=int, help="smoke runs: batches per epoch")
    p.add_argument("--calibrate", action="store_true",
                   help=f"time an epoch of each trainer; write {BUDGET_FILE.name}")
    return p.parse_args(argv)


def shown(path: Path) -> str:
    """A path as settings store it: relative to the checkout when inside it."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def resolve_config(name: str) -> Path:
    path = Path(name)
    path = path if path.is_file() else REPO_ROOT / name  # relative to cwd, else the checkout
    if not path.is_file():
        sys.exit(f"error: --template-config {name} not found")
    return path.resolve()


def default_epochs(config: Path) -> tuple[int, int]:
    """(peer, template) epochs: the calibration file's (its template entry only if it was
    calibrated for this config), else 120 and the config's trainer.max_epochs."""
    budget = json.loads(BUDGET_FILE.read_text()) if BUDGET_FILE.is_file() else {}
    template = budget.get("template_epochs") \
        if budget.get("template_config") == shown(config) else None
    template = template or (yaml.safe_load(config.read_text()).get("trainer") or {}).get(
        "max_epochs")
    if not template:
        sys.exit(f"error: {shown(config)} sets no trainer.max_epochs; give --template-epochs")
    return budget.get("peer_epochs", PEER_EPOCHS), template


def load(args: argparse.Namespace, fold: int):
    """(train images, train labels, eval sets): fold ``fold`` validates; test if --test."""
    folder = Path(args.data_dir) / BATCH_FOLDER
    images, labels = read_split(folder, train=True)
    train, val = fold_split(len(labels), fold)
    sets = {"val": (images[val], labels[val])}
    if args.test:
        sets["test"] = read_split(folder, train=False)
    return images[train], labels[train], sets


def run_peer(args, seed: int, epochs: int) -> dict:
    images, labels, sets = load(args, fold=seed)
    r = train_peer(images, labels, sets, epochs, seed, args.threads, args.limit_batches)
    return {"val_acc": r["acc"]["val"], "test_acc": r["acc"].get("test"),
            "wall_s": r["wall_s"] + r["eval_s"]["val"], "detail": r}


def run_template(args, config: Path, seed: int, epochs: int, extra: tuple = ()) -> dict:
    """One fit through the project's CLI, then ``validate`` (and ``test``) of its model."""
    torch.set_num_threads(args.threads)  # the peer's count, whichever ran first
    with tempfile.TemporaryDirectory() as root:
        cli_args = ["fit", "--config", str(config), "--data.data_dir", str(args.data_dir),
                    "--data.val_fold", str(seed), "--seed_everything", str(seed),
                    "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir", root,
                    "--trainer.enable_progress_bar=false"]
        if args.limit_batches:
            cli_args += [f"--trainer.limit_{s}_batches={args.limit_batches}"
                         for s in ("train", "val", "test")]
        cli_args += [f"--{a.lstrip('-')}" for a in args.template_arg] + list(extra)
        start = time.perf_counter()
        cli = cli_main(cli_args)
        val = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
        wall = time.perf_counter() - start
        # The routed blocks' health after the fit, as this validation logged it
        # (compare_recipes.py holds it to issue 33's bar, analysis.routing.stats.HEALTH_BAR).
        routing = {k: float(v) for k, v in cli.trainer.callback_metrics.items()
                   if k.startswith("route/")}
        if args.keep_models:
            keep_model(cli, Path(args.keep_models), seed)
        test = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False) \
            if args.test else None
    return {"val_acc": val[0]["val/acc"], "test_acc": test[0]["test/acc"] if test else None,
            "wall_s": wall, "detail": {"trained_epochs": cli.trainer.current_epoch,
                                       "routing": routing}}


def keep_model(cli, folder: Path, seed: int) -> None:
    """The fitted model and its run's config as ``template_seed<s>.ckpt`` / ``.yaml``."""
    folder.mkdir(parents=True, exist_ok=True)
    cli.trainer.save_checkpoint(folder / f"template_seed{seed}.ckpt")
    shutil.copyfile(Path(cli.trainer.log_dir) / "config.yaml", folder / f"template_seed{seed}.yaml")


def config_content(config: Path) -> str:
    """sha256 of the config's parsed content and of each YAML file it names (its network
    preset): a comment or layout edit does not refit five 15-minute runs, a value does."""
    hashes = [digest for _, digest in config_hashes([config])]
    return hashlib.sha256("".join(hashes).encode()).hexdigest()


def settings_for(args, trainer: str, seed: int, epochs: int, config: Path) -> dict:
    """What a stored result must match to be reused."""
    s = {"trainer": trainer, "seed": seed, "fold": seed, "epochs": epochs,
         "threads": args.threads, "limit_batches": args.limit_batches, "test": args.test,
         "data": data_files_hash(args.data_dir)}  # the batch files' content, not their path
    if trainer == "template":
        s |= {"config": shown(config), "template_args": list(args.template_arg),
              "config_content": config_content(config)}
    return s


def fit_or_reuse(args, trainer: str, seed: int, settings: dict, fit) -> dict:
    path = Path(args.out) / f"{trainer}_seed{seed}.json"
    old = json.loads(path.read_text()) if path.is_file() else None
    reused = old is not None and old.get("settings") == settings
    if old is not None and not reused:
        print(f"{trainer} seed {seed}: {path} has other settings; fitting again")
    # The machine beside each fit: epochs are the budget, but their minutes depend on the
    # CPU (an AMD EPYC took 2.0x the Intel Xeon's time per peer epoch, 1.4x per template one).
    # Taken before the fit, so the load average says whether the machine was idle.
    machine = None if reused else machine_facts(args.threads)
    result = old if reused else {"settings": settings, **fit(), "machine": machine}
    if not reused:
        write_json_atomic(path, result)
        if result["test_acc"] is not None:
            name = "peer (airbench94 rewrite)" if trainer == "peer" \
                else f"template `{settings['config']}`"
            record_fit_scoring(name, seed, settings["epochs"], shown(path),
                               result["test_acc"], Path(args.ledger))
    test = "" if result["test_acc"] is None else f", test {100 * result['test_acc']:.1f} %"
    print(f"{trainer} seed {seed} (fold {seed}): val {100 * result['val_acc']:.1f} %{test}, "
          f"{result['wall_s'] / 60:.1f} min" + (f" (reused {path})" if reused else ""),
          flush=True)
    return result


CALIBRATION_EPOCHS = 4
"""Epochs per calibration fit. The first is warm-up (allocator, oneDNN kernel choice); one
warmed epoch alone proved noisy: a calibration from the second of two epochs gave the peer
9.0 s/epoch where its idle epochs in a real fit took 4.2-4.8 s, so the median of the
warmed epochs is used."""


def per_epoch(epoch_s: list[float], wall_s: float) -> tuple[float, float]:
    """(median seconds of the warmed epochs, the rest of the fit's wall time: its fixed
    cost, first-epoch warm-up included)."""
    steady = statistics.median(epoch_s[1:])
    return steady, max(0.0, wall_s - len(epoch_s) * steady)


def calibrate(args, config: Path) -> None:
    """Short fits on fold 0 (CALIBRATION_EPOCHS): the warmed epochs' median time and the
    fixed cost per fit give the epochs that fit in BUDGET_S; written to peer_budget.json
    with the machine facts."""
    facts = machine_facts(args.threads)
    if facts["load_avg_1_5_15"][0] > 0.5:
        print(f"warning: load average {facts['load_avg_1_5_15'][0]:.2f}: the machine is not "
              "idle, so these timings are too slow")
    peer = run_peer(args, seed=0, epochs=CALIBRATION_EPOCHS)
    peer_epoch, peer_fixed = per_epoch(peer["detail"]["epoch_s"], peer["wall_s"])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "epochs.json"
        timer = {"class_path": "_epochs.EpochTimer", "init_args": {"out": str(out)}}
        template = run_template(args, config, 0, CALIBRATION_EPOCHS,
                                (f"--trainer.callbacks+={json.dumps(timer)}",))
        epoch_s = [e["epoch_s"] for e in json.loads(out.read_text())["epochs"]]
    template_epoch, template_fixed = per_epoch(epoch_s, template["wall_s"])
    budget = {"peer_epochs": max(1, int((BUDGET_S - peer_fixed) // peer_epoch)),
              "template_epochs": max(1, int((BUDGET_S - template_fixed) // template_epoch)),
              "template_config": shown(config), "budget_s_per_fit": BUDGET_S,
              "date": datetime.now().astimezone().isoformat(timespec="seconds"),
              "machine": facts,
              "measured_s": {"peer_epoch": peer_epoch, "peer_fixed": peer_fixed,
                             "template_epoch": template_epoch, "template_fixed": template_fixed}}
    print(f"peer: {peer_epoch:.1f} s/epoch + {peer_fixed:.1f} s/fit -> "
          f"{budget['peer_epochs']} epochs in {BUDGET_S / 60:.0f} min; template: "
          f"{template_epoch:.1f} s/epoch + {template_fixed:.1f} s/fit -> "
          f"{budget['template_epochs']} epochs")
    if args.limit_batches:
        print(f"--limit-batches: partial epochs, so {BUDGET_FILE.name} is not written")
        return
    write_json_atomic(BUDGET_FILE, budget)
    print(f"wrote {BUDGET_FILE}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not 1 <= args.seeds <= MAX_SEEDS:
        sys.exit(f"error: --seeds {args.seeds}: seed s holds out fold s and only folds "
                 f"0-{MAX_SEEDS - 1} are used, so give 1..{MAX_SEEDS} seeds")
    torch.set_num_threads(args.threads)
    config = resolve_config(args.template_config)
    if args.calibrate:
        return calibrate(args, config)
    peer_epochs, template_epochs = default_epochs(config)
    peer_epochs, template_epochs = (args.peer_epochs or peer_epochs,
                                    args.template_epochs or template_epochs)
    if args.test:
        print("--test: the test images are scored once per fit, never to choose; each "
              "scoring counts in docs/test_set_uses.md")
    trainers = [(t, e) for t, e in (("peer", peer_epochs), ("template", template_epochs))
                if args.trainers in ("both", t)]
    results = {t: [] for t, _ in trainers}
    for seed in range(args.seeds):
        for trainer, epochs in trainers:
            fit = (lambda s=seed, e=epochs: run_peer(args, s, e)) if trainer == "peer" \
                else (lambda s=seed, e=epochs: run_template(args, config, s, e))
            settings = settings_for(args, trainer, seed, epochs, config)
            results[trainer].append(fit_or_reuse(args, trainer, seed, settings, fit))
    print(means_line(results))
    if len(results) == 1:
        return
    print(paired_line([r["val_acc"] for r in results["template"]],
                      [r["val_acc"] for r in results["peer"]]))
    if args.test:
        print("test (once per fit): " + "; ".join(
            f"{t} {100 * mean_sd([r['test_acc'] for r in rs])[0]:.1f} %"
            for t, rs in results.items()))
    print(summary_line(results["peer"], results["template"]))


if __name__ == "__main__":
    main()
