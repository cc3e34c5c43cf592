"""Speed suite: measured epochs of the real recipes (--tiled), or data paths vs synthetic data.

    python benchmarks/bench_suite.py --tiled 10            # measured 50,000-image epochs
    python benchmarks/bench_suite.py --tiled 10 --epochs 2 --recipes focal_onecycle
    python benchmarks/bench_suite.py                       # data paths, about 4 min on 2 CPUs

``--tiled R``: the real slice (``--data-dir``; default ``$CIFAR_MOE_DATA``, else
../shared/data/cifar-10-mini; 5,085 training images) repeated R times in a temporary folder
(timing only: the copies are identical); with R = 10 the training set is 50,000 images and
the other 850 are the validation split. Each recipe runs
in a fresh process through ``cli_main(["fit", "--config", recipe, ...])``, so its data
module, LightningModule, callbacks, logging and ``auto`` settings are the ones a user gets,
plus a timing callback. The first epoch (compile and warm-up) is reported on its own;
"steady" is the mean of the later ones (``--epochs`` >= 2). Per recipe: steady training time
per epoch (validation excluded, shown apart), img/s, the ratio to synthetic img/s of the
same network measured in the same process after the fit, MFU (bf16 runs on a GPU whose
exact name has a known peak, else "unknown") and peak memory (GPU: torch's peak allocated;
CPU: peak RSS of the training process, DataLoader workers not included).
``--limit-batches`` makes partial epochs for smoke runs only; a table must use whole ones.

Without ``--tiled``: training img/s at each recipe's batch size fed by synthetic tensors, by
the classic per-image DataLoader (2 workers) and by the device path, and augmentation-only
throughput of both paths; a 50,000-image epoch is only **projected** there. Recipe
settings (augmentation, network, batch size) are read from configs/, never copied here.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from _checkout import DEFAULT_SLICE_DIR
from _epochs import run_child, write_tiled
from _suite_paths import path_rows, row_child

RECIPES = ("mixup_cosine", "focal_onecycle", "slice", "quickstart")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiled", type=int, metavar="R",
                        help="measure whole epochs on the real slice repeated R times")
    parser.add_argument("--data-dir", default=DEFAULT_SLICE_DIR,
                        help="with --tiled: the real slice's data_dir (default: $CIFAR_MOE_DATA, "
                             "else the one beside the checkout)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per recipe with --tiled: the first + steady ones (>= 2)")
    parser.add_argument("--recipes", nargs="+", choices=RECIPES,
                        default=["mixup_cosine", "focal_onecycle"], help="with --tiled")
    parser.add_argument("--limit-batches", type=int,
                        help="with --tiled: batches per epoch, for smoke runs only")
    parser.add_argument("--fit-args", action="append", default=[], metavar="ARG",
                        help="with --tiled, repeatable: one more fit argument for every "
                             "recipe (smoke runs), e.g. --fit-args=--data.batch_size=32")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    parser.add_argument("--iters", type=int, help="timed steps per figure (default 4, quick 2)")
    parser.add_argument("--child", nargs=4, metavar=("RECIPE", "DATA", "IMAGES", "OUT"),
                        help=argparse.SUPPRESS)  # internal: one recipe's fit
    parser.add_argument("--row", nargs=3, metavar=("NAME", "DATA", "OUT"),
                        help=argparse.SUPPRESS)  # internal: one data-path row
    args = parser.parse_args()
    if args.tiled is not None and args.tiled < 1:
        parser.error("--tiled: give the number of copies of the slice, 1 or more")
    if args.epochs < 2:
        parser.error("--epochs: use 2 or more (the first epoch is reported apart)")
    if args.limit_batches is not None and args.limit_batches < 2:
        parser.error("--limit-batches: use 2 or more (1 would mean a whole epoch)")
    args.iters = args.iters or (2 if args.quick else 4)
    return args


def child_command(args, recipe: str, data_dir: str, images: int, out: str) -> list[str]:
    cmd = [sys.executable, __file__, "--child", recipe, data_dir, str(images), out,
           "--epochs", str(args.epochs), "--iters", str(args.iters)]
    cmd += ["--limit-batches", str(args.limit_batches)] if args.limit_batches else []
    return cmd + [f"--fit-args={a}" for a in args.fit_args]


def tiled_suite(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        images = write_tiled(args.data_dir, args.tiled, tmp)
        results = []
        for recipe in args.recipes:
            out = Path(tmp) / f"{recipe}.json"
            # stdout and stderr go straight through: a child's failure is seen, not parsed.
            done = subprocess.run(child_command(args, recipe, tmp, images, str(out)))
            result = json.loads(out.read_text()) if out.is_file() else {}
            if done.returncode != 0 or "img_s" not in result:
                sys.exit(f"error: {recipe}: the timing run failed (exit {done.returncode}); "
                         "its output is above")
            results.append(result)
    print("\n".join(tiled_table(results)))


def tiled_table(results: list[dict]) -> list[str]:
    first = results[0]
    lines = [f"device: {first['device']}, torch {first['torch']}, "
             f"{torch.get_num_threads()} threads; {first['train_images']:,} training images "
             f"per epoch" + (" (LIMITED: smoke run, not whole epochs)" if first["limited"]
                             else ""), "",
             "| recipe | batch | settings | first epoch train | steady epoch train (+ val) "
             "| img/s | synthetic img/s | ratio | MFU | peak memory |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        settings = (f"{r['precision']}, {'device' if r['device_path'] else 'classic'} path"
                    f"{', channels_last' if r['channels_last'] else ''}"
                    f"{', compiled' if r['compiled'] else ''}")
        mfu = "unknown" if r["mfu"] is None else f"{r['mfu']:.1%}"
        lines.append(
            f"| {r['recipe']} | {r['batch']} | {settings} | {r['first_train_s']:.1f} s | "
            f"{r['steady_train_s']:.1f} s (+ {r['steady_epoch_s'] - r['steady_train_s']:.1f} s)"
            f" | {r['img_s']:.1f} | {r['synthetic_img_s']:.1f} | "
            f"{r['img_s'] / r['synthetic_img_s']:.2f} | {mfu} | {r['peak_memory_mb']:.0f} MB |")
    return lines


def main() -> None:
    args = parse_args()
    torch.set_flush_denormal(True)  # as cli_main does: subnormals slow CPU convs up to 5x
    if args.child:
        recipe, data_dir, images, out = args.child
        run_child(recipe, data_dir, int(images), args.epochs, args.limit_batches, out,
                  args.iters, args.fit_args)
    elif args.row:
        row_child(*args.row, args.iters)
    elif args.tiled:
        tiled_suite(args)
    else:
        print("\n".join(path_rows(args.iters)))


if __name__ == "__main__":
    main()
