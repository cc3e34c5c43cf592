"""An evaluation-only candidate, paired on the same checkpoints: each run's final checkpoint
scored on its held-out fold with the recipe's TTA and with another one.

    python benchmarks/tta_check.py docs/studies/routing/runs/routed
    python benchmarks/tta_check.py docs/studies/routing/runs/routed --candidate none

Protocol: docs/protocols/selection.md, "candidates that change only evaluation". Each run
folder is a study run (``runs/<row>/fold<F>-seed<S>``) with its ``result.json`` and the
fit's ``last.ckpt``; only folds 0-6 may select. The run's recorded ``final_val_acc`` must
equal the incumbent's scoring of the same checkpoint (the line says so if not), which checks
that this is the evaluation the fit made. Nothing is written into the run folders; the
test images are never read. The last line gives the paired gain with the adoption rule's
verdict (mean > 2 SE over >= 5 folds) and the evaluation time of each way.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from cifar_moe.cli.main import cli_main
from cifar_moe.runs.study.stats import paired_difference
from cifar_moe.training.tta import TTA_MODES

SELECTION_FOLDS = range(7)  # folds 0-6 select (docs/protocols/selection.md)


def run_parts(run: Path) -> tuple[int, float, Path, Path] | None:
    """(fold, recorded final_val_acc, config.yaml, last.ckpt) of a finished run, else None."""
    result, fit = run / "result.json", sorted(run.glob("lightning_logs/*/seed*-*"))
    if not result.is_file() or not fit or not (fit[-1] / "checkpoints/last.ckpt").is_file():
        return None
    args = json.loads((run / "inputs.json").read_text())["args"]
    folds = [int(a.split("=", 1)[1]) for a in args if a.startswith("--data.val_fold=")]
    if not folds:
        return None
    recorded = json.loads(result.read_text())["final_val_acc"]
    return folds[0], recorded, fit[-1] / "config.yaml", fit[-1] / "checkpoints/last.ckpt"


def score(config: Path, ckpt: Path, tta: str) -> tuple[float, float]:
    """(val accuracy, seconds) of ``ckpt`` on its run's held-out fold with ``tta``."""
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        cli = cli_main(["validate", "--config", str(config), "--ckpt_path", str(ckpt),
                        f"--model.tta={tta}", "--verbose=false", "--trainer.logger=false",
                        "--trainer.enable_progress_bar=false",
                        f"--trainer.default_root_dir={root}"])
        seconds = time.perf_counter() - start
    return float(cli.trainer.callback_metrics["val/acc"]), seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", type=Path, help="a study row's run folder (runs/<row>)")
    parser.add_argument("--incumbent", default="flip", choices=TTA_MODES)
    parser.add_argument("--candidate", default="flip_translate", choices=TTA_MODES)
    args = parser.parse_args(argv)
    found = {}
    for run in sorted(args.row.iterdir()):
        parts = run_parts(run) if run.is_dir() else None
        if parts and parts[0] in SELECTION_FOLDS:
            found[(parts[0], run.name)] = parts
    if not found:
        sys.exit(f"no finished run on folds 0-6 with a last.ckpt under {args.row}")
    acc = {args.incumbent: {}, args.candidate: {}}
    secs = {args.incumbent: 0.0, args.candidate: 0.0}
    for key, (fold, recorded, config, ckpt) in sorted(found.items()):
        for tta in acc:
            acc[tta][key], seconds = score(config, ckpt, tta)
            secs[tta] += seconds
        check = "" if abs(acc[args.incumbent][key] - recorded) < 1e-6 else \
            f"  (recorded {100 * recorded:.2f} %: NOT the fit's evaluation)"
        print(f"fold {fold} ({key[1]}): {args.incumbent} {100 * acc[args.incumbent][key]:.2f} %, "
              f"{args.candidate} {100 * acc[args.candidate][key]:.2f} %{check}", flush=True)
    diff = paired_difference(acc[args.candidate], acc[args.incumbent])
    n, mean = diff["n"], 100 * diff["mean"]
    se = 100 * diff["sd"] / n ** 0.5 if n > 1 else float("nan")
    adopt = n >= 5 and mean > 2 * se
    interval = (f"95 % CI [{100 * diff['low']:+.2f}, {100 * diff['high']:+.2f}]" if n > 1
                else "no interval")
    print(f"{args.candidate} - {args.incumbent}: {mean:+.2f} points, SE {se:.2f}, {interval} "
          f"({n} folds); adopt: {'yes' if adopt else 'no'}; "
          f"validate {secs[args.candidate] / n:.1f} s against {secs[args.incumbent] / n:.1f} s "
          "per fold (the whole command)")


if __name__ == "__main__":
    main()
