"""One study run in its own process: ``fit``, ``test`` of the best checkpoint, ``result.json``.

    python -m cifar_moe.cli.study_child --run-dir DIR [--parent-pid PID | --lock PATH] \
        [--threads N] [--no-test] -- <fit CLI args>

``--no-test`` (a study whose metric is not ``test_acc``, such as every fold study): no
``test``, so the test images are not scored, and ``result.json`` says so: ``test_acc: null``.

The study runner starts this with ``sys.executable``; a crash here ends only this run.
``result.json`` is written atomically as the very last step, so its presence means the run
finished. A user mistake exits 2 after one ``error: ...`` line on stderr.
"""

import argparse
import os
import sys
import threading
import time
from pathlib import Path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cifar_moe.cli.study_child")
    parser.add_argument("--run-dir", type=Path, required=True, help="the run's folder")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="the study process: this run stops when it is gone")
    parser.add_argument("--lock", type=Path, default=None,
                        help="the run folder's lock, held for life (a submitit job's run)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--no-test", dest="test", action="store_false",
                        help="do not score the test images (test_acc null in result.json)")
    parser.add_argument("cli_args", nargs=argparse.REMAINDER, help="-- then the fit args")
    opts = parser.parse_args(argv)
    if opts.cli_args[:1] == ["--"]:
        opts.cli_args = opts.cli_args[1:]
    return opts


def _exit_with_parent(parent: int | None) -> None:
    """Stop when the study process dies (kill -9), so no orphan trains on into a folder that
    a re-run is about to wipe. The study passes its pid: a parent that died before this
    thread started is seen too (``getppid`` would already name the new parent)."""
    parent = parent or os.getppid()

    def gone() -> bool:
        return os.getppid() != parent

    if gone():
        os._exit(1)

    def watch() -> None:
        while not gone():
            time.sleep(0.5)
        print("error: the study process ended; this run stopped with it", file=sys.stderr,
              flush=True)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _hold_folder(lock_path: Path, run_dir: Path):
    """A job's run holds its folder as a local run's child does (inherited from the study):
    a study re-run while this job still trains waits for it, or refuses, instead of
    starting a second run in the folder."""
    from cifar_moe.core.errors import UserError
    from cifar_moe.runs.study.lock import hold_run_folder, record_holder

    try:
        handle = hold_run_folder(lock_path, run_dir)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    record_holder(handle, os.getpid())
    return handle


def run(run_dir: Path, cli_args: list[str], test: bool = True) -> dict:
    """Fit with the recorder attached, test the best-val/acc checkpoint (unless not
    ``test``: the protocols score the test images once per recipe, not per run); the
    numbers."""
    import torch

    from cifar_moe.cli.main import cli_main
    from cifar_moe.runs.study.recorder import RunRecorder, fit_argv

    start = time.perf_counter()
    cli = cli_main(fit_argv(run_dir, cli_args))
    fit_seconds = time.perf_counter() - start
    recorder = next(cb for cb in cli.trainer.callbacks if isinstance(cb, RunRecorder))
    best_path = cli.trainer.checkpoint_callback.best_model_path
    # Before the test: loading the best checkpoint also loads the recorder's state saved
    # with it (for a resumed fit), the curve up to that epoch only.
    recorded = recorder.summary()
    test_acc = None  # recorded as null: this run was made not to score the test images
    if test:
        tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best",
                                  verbose=False)[0]
        test_acc = float(tested["test/acc"])
    return {
        "test_acc": test_acc,
        **recorded,
        "epochs_run": cli.trainer.current_epoch,
        "fit_seconds": round(fit_seconds, 2),
        "best_checkpoint": best_path,
        "argv": list(sys.orig_argv),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    opts = _parse(argv)
    # First, before the seconds of importing torch and Lightning: a study killed meanwhile
    # must not leave this run behind.
    _exit_with_parent(opts.parent_pid)
    held = _hold_folder(opts.lock, opts.run_dir) if opts.lock else None  # noqa: F841 - kept until exit
    # cli_main gets its args explicitly; the study's own argv would only trigger
    # LightningCLI's "both args and sys.argv" warning.
    sys.argv = sys.argv[:1]
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    from cifar_moe.core.atomic_files import write_json_atomic
    from cifar_moe.core.errors import UserError
    from cifar_moe.runs.study.paths import portable

    try:
        result = run(opts.run_dir, opts.cli_args, opts.test)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    # Paths relative to the project: the record is committed where a study resumes from a
    # fresh clone (docs/studies/routing/runs/), and must not name this machine's folders.
    write_json_atomic(opts.run_dir / "result.json", portable(result))


if __name__ == "__main__":
    main()
