"""Reproduce the README's results table on the real 10% slice: 5 rows x 3 seeds.

    python benchmarks/results.py                       # the README table (about 65 min, 2 cores)
    python benchmarks/results.py --epochs 1 --seeds 0  # a quick look

Each run is a CLI fit on the slice's 5,085 training images (500 held out for validation by
a seeded split), then a test of the best-val/acc checkpoint on the 500 test images. Both
recipes are shortened to ``--epochs``: cosine's T_max becomes epochs - 1 and mixup stops
after the same fraction of training as in the 36-epoch recipe (25/36); OneCycle scales
itself. The controls use the focal + OneCycle recipe. Writes a markdown table and a JSON
file with every run under ``--out``.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from cifar_moe.cli import cli_main
from cifar_moe.paths import CONFIG_DIR, REAL_SLICE_DIR


def rows(epochs: int) -> dict[str, list[str]]:
    mix_until = max(1, round(epochs * 25 / 36))
    seed_a = [f"--config={CONFIG_DIR / 'mixup_cosine.yaml'}",
              f"--model.scheduler.init_args.T_max={max(epochs - 1, 1)}",
              f"--model.mix_until_epoch={mix_until}"]
    seed_b = [f"--config={CONFIG_DIR / 'focal_onecycle.yaml'}"]
    return {
        "mixup + cosine (seed A net, K=2)": seed_a,
        "focal + OneCycle (seed B net, K=4)": seed_b,
        "K=1 control (seed B net, K=1), focal + OneCycle": [
            *seed_b, f"--config={CONFIG_DIR / 'controls' / 'k1.yaml'}"],
        "ResNet-18 control, focal + OneCycle": [
            *seed_b, f"--config={CONFIG_DIR / 'controls' / 'resnet18.yaml'}"],
        # The anneal lasts the first half of the shortened run instead of 10 epochs.
        "focal + OneCycle, seed B net, tau 30->1 anneal + balance 0.01": [
            *seed_b, f"--config={CONFIG_DIR / 'routing' / 'anneal_balance.yaml'}",
            f"--tau_schedule.epochs={max(epochs // 2, 1)}"],
    }


def run_once(recipe: list[str], seed: int, epochs: int, out: Path, workers: int) -> dict:
    start = time.time()
    cli = cli_main(["fit", *recipe, f"--seed_everything={seed}",
                    f"--data.data_dir={REAL_SLICE_DIR}", "--data.val_size=500",
                    f"--data.num_workers={workers}", f"--trainer.max_epochs={epochs}",
                    f"--trainer.default_root_dir={out}", "--trainer.enable_progress_bar=false"])
    fit_s = time.time() - start
    routing = {k: round(float(v), 4) for k, v in cli.trainer.callback_metrics.items()
               if k.startswith("route/")}  # the last validation epoch's routing health
    metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")[0]
    return {"seed": seed, "test_acc": metrics["test/acc"], "fit_seconds": round(fit_s, 1),
            "best_val_acc": float(cli.trainer.checkpoint_callback.best_model_score),
            "log_dir": cli.trainer.log_dir, "routing": routing}


def table(results: dict, epochs: int) -> list[str]:
    lines = [f"Real slice, {epochs} epochs; test accuracy on its 500 test images",
             "", "| row | test acc (mean +/- std over seeds) | seed: acc | fit time / run |",
             "|---|---|---|---|"]
    for name, runs in results.items():
        accs = [r["test_acc"] * 100 for r in runs]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        per_seed = ", ".join(f"{r['seed']}: {r['test_acc'] * 100:.1f}" for r in runs)
        fit = statistics.mean(r["fit_seconds"] for r in runs)
        spread = f"+/- {std:.1f} %" if len(accs) > 1 else "% (one seed)"
        lines.append(f"| {name} | {statistics.mean(accs):.1f} {spread} | {per_seed} "
                     f"| {fit:.0f} s |")
    return lines


def routing_table(results: dict) -> list[str]:
    """Seed 0's last validation epoch: routing health of the seed B rows, per block."""
    lines = ["| row | block | entropy | balance | mutual_info | max_share | dead_fraction |",
             "|---|---|---|---|---|---|---|"]
    metrics = ("entropy", "balance", "mutual_info", "max_share", "dead_fraction")
    for name, runs in results.items():
        run = next((r for r in runs if r["seed"] == 0), None)
        if run is None or not ("seed B net, K=4" in name or "anneal" in name):
            continue
        for block in sorted({k.split("/")[1] for k in run["routing"] if "/block" in k}):
            values = [run["routing"][f"route/{block}/{m}"] for m in metrics]
            lines.append(f"| {name} | {block} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="*", help="substrings selecting rows (default all)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("lightning_logs") / "results")
    parser.add_argument("--merge", action="store_true",
                        help="add to the rows already in --out/results.json")
    parser.add_argument("--render", action="store_true",
                        help="only print the tables of an existing --out/results.json")
    args = parser.parse_args()
    store = args.out / "results.json"
    keep = (args.merge or args.render) and store.is_file()
    results = json.loads(store.read_text()) if keep else {}
    for name, recipe in rows(args.epochs).items() if not args.render else []:
        if args.rows and not any(r in name for r in args.rows):
            continue
        results[name] = [run_once(recipe, s, args.epochs, args.out, args.workers)
                         for s in args.seeds]
        args.out.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(results, indent=2))
    lines = [*table(results, args.epochs), "", *routing_table(results)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
