"""An evaluation-only candidate, paired on the same checkpoints: each run's final checkpoint
scored on its held-out fold with the recipe's TTA and with another one.

    python benchmarks/tta_check.py docs/studies/routing/runs/routed
    python benchmarks/tta_check.py docs/studies/routing/runs/routed --candidate none

Protocol: docs/protocols/selection.md, "candidates that change only evaluation". Each run
folder is a study run (``runs/<row>/fold<F>-seed<S>``) with its ``result.json`` and the
fit's ``last.ckpt``; only folds 0-6 may select. The run's recorded ``final_val_acc`` must
equal the incumbent's scoring of the same checkpoint, which checks that this is the
evaluation the fit made: a fold where it does not (another fit, a stale record) is shown
and left out. Each run's scores are saved beside its record
(``tta_check.json``, committed with it), and a run whose checkpoint is gone (a study's
checkpoints stay on the machine that ran it) is pooled from that file: the five folds the
rule needs can come from several sessions. The test images are never read. The last line
gives the paired gain with the adoption rule's verdict (mean > 2 SE over >= 5 folds) and
the evaluation time of each way.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from cifar_moe.cli.main import cli_main
from cifar_moe.core.cli_args import arg_values
from cifar_moe.runs.study.stats import paired_difference
from cifar_moe.training.tta import TTA_MODES

SELECTION_FOLDS = range(7)  # folds 0-6 select (docs/protocols/selection.md)
RECORD = "tta_check.json"
"""Per run: {"fold": F, "acc": {mode: accuracy}, "seconds": {mode: seconds}}."""


def run_parts(run: Path) -> tuple[int, float, Path, Path] | None:
    """(fold, recorded final_val_acc, config.yaml, last.ckpt) of a finished run, else None.
    The two paths may not exist: a fresh clone has the run's record, not its checkpoint."""
    result, fit = run / "result.json", sorted(run.glob("lightning_logs/*/seed*-*"))
    if not result.is_file() or not (run / "inputs.json").is_file():
        return None
    args = json.loads((run / "inputs.json").read_text())["args"]
    folds = [int(value) for value in arg_values(args, "data.val_fold")]
    if not folds:
        return None
    recorded = json.loads(result.read_text())["final_val_acc"]
    fit_dir = fit[-1] if fit else run / "missing"
    return folds[-1], recorded, fit_dir / "config.yaml", fit_dir / "checkpoints/last.ckpt"


def saved_scores(run: Path) -> dict:
    path = run / RECORD
    return json.loads(path.read_text()) if path.is_file() else {"acc": {}, "seconds": {}}


def run_scores(run: Path, parts: tuple, modes: list[str]) -> tuple[dict, dict, str] | None:
    """({mode: accuracy}, {mode: seconds}, how) for one run: scored now from its checkpoint
    (and saved beside its record), or read back from that record; None if neither can be."""
    fold, _, config, ckpt = parts
    saved = saved_scores(run)
    if ckpt.is_file():
        before = dict(saved["acc"])
        for tta in modes:
            saved["acc"][tta], saved["seconds"][tta] = score(config, ckpt, tta)
        if saved["acc"] != before:  # the same scores again: the committed file stays as is
            record = {"fold": fold, "acc": saved["acc"], "seconds": saved["seconds"]}
            (run / RECORD).write_text(json.dumps(record, indent=1) + "\n")
        return saved["acc"], saved["seconds"], ""
    if all(tta in saved["acc"] for tta in modes):
        return saved["acc"], saved["seconds"], f" (from {RECORD})"
    return None


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
    modes = [args.incumbent, args.candidate]
    acc, secs = {tta: {} for tta in modes}, {tta: 0.0 for tta in modes}
    for run in sorted(p for p in args.row.iterdir() if p.is_dir()):
        parts = run_parts(run)
        scores = run_scores(run, parts, modes) if parts and parts[0] in SELECTION_FOLDS \
            else None
        if scores is None:
            continue
        same = abs(scores[0][args.incumbent] - parts[1]) < 1e-6
        check = "" if same else (f"  (recorded {100 * parts[1]:.2f} %: NOT the fit's "
                                 "evaluation, left out)")
        print(f"fold {parts[0]} ({run.name}): {args.incumbent} "
              f"{100 * scores[0][args.incumbent]:.2f} %, {args.candidate} "
              f"{100 * scores[0][args.candidate]:.2f} %{scores[2]}{check}", flush=True)
        for tta in modes if same else ():  # a stale record or another fit pairs nothing
            acc[tta][(parts[0], run.name)] = scores[0][tta]
            secs[tta] += scores[1][tta]
    if not acc[args.incumbent]:
        sys.exit(f"no finished run on folds 0-6 with a last.ckpt or a matching {RECORD} "
                 f"under {args.row}")
    print(verdict(args.candidate, args.incumbent, acc, secs))


def verdict(candidate: str, incumbent: str, acc: dict, secs: dict) -> str:
    """The last line: the paired gain, its interval and the adoption rule's answer."""
    diff = paired_difference(acc[candidate], acc[incumbent])
    n, mean = diff["n"], 100 * diff["mean"]
    se = 100 * diff["sd"] / n ** 0.5 if n > 1 else float("nan")
    adopt = n >= 5 and mean > 2 * se
    interval = (f"95 % CI [{100 * diff['low']:+.2f}, {100 * diff['high']:+.2f}]" if n > 1
                else "no interval")
    return (f"{candidate} - {incumbent}: {mean:+.2f} points, SE {se:.2f}, {interval} "
            f"({n} folds); adopt: {'yes' if adopt else 'no'}; validate "
            f"{secs[candidate] / n:.1f} s against {secs[incumbent] / n:.1f} s per fold (each "
            "validate command whole, as timed when the fold was scored)")


if __name__ == "__main__":
    main()
