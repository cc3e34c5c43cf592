"""Score an adopted recipe's kept models once on the test images, without fitting again.

    python benchmarks/bench_peer.py --trainers template --keep-models M --out R  # the fits
    python benchmarks/score_kept.py R M           # each kept model reproduces its result?
    python benchmarks/score_kept.py R M --test    # then the test images, once per model

The selection protocol (docs/protocols/selection.md) scores the 500 test images once per
adopted recipe. The five fits that earned the adoption are the recipe's measured models, so
they are what is scored: each kept model (``template_seed<s>.ckpt`` with its run's
``template_seed<s>.yaml``) must first reproduce, on its held-out fold, the ``val_acc`` its
stored result (``template_seed<s>.json``) records, within one image, or nothing is scored.
Each test scoring is a line of docs/test_set_uses.md, added as it happens.
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from _checkout import DEFAULT_SLICE_DIR
from testset_ledger import LEDGER, record_test_use

from cifar_moe.cli import cli_main
from cifar_moe.runs.study.inputs import data_files_hash

ONE_IMAGE = 1 / 500  # a held-out fold has about 508 images: a smaller gap is not a model change


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="bench_peer.py --out folder of the fits")
    p.add_argument("models", type=Path, help="its --keep-models folder")
    p.add_argument("--data-dir", default=DEFAULT_SLICE_DIR, help="the fits' data folder")
    p.add_argument("--test", action="store_true", help="score the test images once per model")
    p.add_argument("--ledger", type=Path, default=LEDGER, help="where each scoring is counted")
    return p.parse_args(argv)


def kept_pairs(args) -> list[tuple[int, dict, Path]]:
    """(seed, stored result, checkpoint) of every result with a kept model; refuses results
    on other images and a folder with no kept model."""
    pairs = []
    for path in sorted(args.results.glob("template_seed*.json")):
        result = json.loads(path.read_text())
        seed = result["settings"]["seed"]
        ckpt = args.models / f"template_seed{seed}.ckpt"
        if not ckpt.is_file():
            print(f"seed {seed}: no kept model at {ckpt}; skipped")
            continue
        if result["settings"]["data"] != data_files_hash(args.data_dir):
            sys.exit(f"error: --data-dir {args.data_dir} holds other images than seed {seed}'s "
                     "fit; give the folder it was fitted on")
        pairs.append((seed, result, ckpt))
    if not pairs:
        sys.exit(f"error: no result in {args.results} has a kept model in {args.models}")
    return pairs


def score(args, seed: int, result: dict, ckpt: Path) -> float | None:
    """Validate the kept model on its fold; if it reproduces the result and --test, test it."""
    with tempfile.TemporaryDirectory() as root:
        cli = cli_main(["validate", "--config", str(ckpt.with_suffix(".yaml")),
                        "--ckpt_path", str(ckpt), "--data.data_dir", str(args.data_dir),
                        "--data.val_fold", str(seed), "--trainer.default_root_dir", root,
                        "--trainer.enable_progress_bar=false"])
        val = float(cli.trainer.callback_metrics["val/acc"])
        if abs(val - result["val_acc"]) > ONE_IMAGE:
            sys.exit(f"error: seed {seed}: the kept model validates at {100 * val:.2f} %, its "
                     f"result says {100 * result['val_acc']:.2f} %: not the fitted model")
        print(f"seed {seed} (fold {seed}): kept model val {100 * val:.2f} % "
              f"(result {100 * result['val_acc']:.2f} %)", flush=True)
        if not args.test:
            return None
        test = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    acc = test[0]["test/acc"]
    number = record_test_use(
        f"`score_kept.py --test`, `{result['settings']['config']}` "
        f"{' '.join('--' + a for a in result['settings'].get('template_args', []))}, "
        f"fold {seed}, seed {seed}, {result['settings']['epochs']} epochs, kept model",
        "the adopted recipe's one test scoring per fit, for the README",
        f"{100 * acc:.1f} %", args.ledger)
    print(f"seed {seed}: test {100 * acc:.1f} % (test-set scoring #{number})", flush=True)
    return acc


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.test:
        print("--test: the test images are scored once per kept model, never to choose; "
              f"each scoring counts in {args.ledger}")
    accs = [score(args, *pair) for pair in kept_pairs(args)]
    if args.test:
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"test (once per kept model): {100 * statistics.mean(accs):.1f} +/- "
              f"{100 * sd:.1f} % over {len(accs)} models")


if __name__ == "__main__":
    main()
