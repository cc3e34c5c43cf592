"""One study run in its own process: ``fit``, ``test`` of the best checkpoint, ``result.json``.

    python -m cifar_moe.study.child --run-dir DIR [--threads N] -- <fit CLI args>

The study runner starts this with ``sys.executable``; a crash here ends only this run.
``result.json`` is written atomically as the very last step, so its presence means the run
finished. A user mistake exits 2 after one ``error: ...`` line on stderr.
"""

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

from cifar_moe.atomic_files import atomic_write_text

RECORDER = "cifar_moe.study.recorder.RunRecorder"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON so that ``path`` is whole or absent (temporary file, fsync, rename)."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cifar_moe.study.child")
    parser.add_argument("--run-dir", type=Path, required=True, help="the run's folder")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("cli_args", nargs=argparse.REMAINDER, help="-- then the fit args")
    opts = parser.parse_args(argv)
    if opts.cli_args[:1] == ["--"]:
        opts.cli_args = opts.cli_args[1:]
    return opts


def _exit_with_parent() -> None:
    """Stop when the study process dies (kill -9), so no orphan writes into a folder that a
    re-run is about to wipe."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def fit_argv(run_dir: Path, cli_args: list[str]) -> list[str]:
    """The run's whole ``cli_main`` argv: its fit args, then its folder and the recorder."""
    return ["fit", *cli_args, f"--trainer.default_root_dir={run_dir}",
            f"--trainer.callbacks+={RECORDER}"]


def run(run_dir: Path, cli_args: list[str]) -> dict:
    """Fit with the recorder attached, test the best-val/acc checkpoint; the numbers."""
    import torch

    from cifar_moe.cli import cli_main
    from cifar_moe.study.recorder import RunRecorder

    start = time.perf_counter()
    cli = cli_main(fit_argv(run_dir, cli_args))
    fit_seconds = time.perf_counter() - start
    recorder = next(cb for cb in cli.trainer.callbacks if isinstance(cb, RunRecorder))
    best_path = cli.trainer.checkpoint_callback.best_model_path
    tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best",
                              verbose=False)[0]
    return {
        "test_acc": float(tested["test/acc"]),
        **recorder.summary(),
        "epochs_run": cli.trainer.current_epoch,
        "fit_seconds": round(fit_seconds, 2),
        "best_checkpoint": best_path,
        "argv": list(sys.orig_argv),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    opts = _parse(argv)
    # cli_main gets its args explicitly; the study's own argv would only trigger
    # LightningCLI's "both args and sys.argv" warning.
    sys.argv = sys.argv[:1]
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    _exit_with_parent()
    from cifar_moe.errors import UserError

    try:
        result = run(opts.run_dir, opts.cli_args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    write_json_atomic(opts.run_dir / "result.json", result)


if __name__ == "__main__":
    main()
