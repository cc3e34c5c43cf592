"""Child process for the checkpoint fault tests (run as a script, not collected by pytest).

    python tests/ckpt_child.py {loop|full} DATA_DIR RUN_DIR

Fits one tiny epoch through the CLI (so the trainer has the CLI's checkpoint plugin), then
simulates a log folder on another filesystem than $TMPDIR by making ``os.rename`` fail with
EXDEV, as a cross-device rename does. ``loop`` then saves ``last.ckpt`` and a ``best-*``
file forever (the parent kills it with SIGKILL); ``full`` limits the file size so that the
next save into the checkpoint folder runs out of space part way (``_fill_folder_after``).
"""

import errno
import os
import resource
import signal
import sys
from pathlib import Path

from cifar_moe.cli.main import cli_main

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def _cross_device_rename(src, dst, *args, **kwargs):
    raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))


def _fill_folder_after(folder: Path, limit: int) -> None:
    """Make ``folder`` behave like a full filesystem: files written there stop at ``limit``.

    Every open sets the per-process file-size limit (RLIMIT_FSIZE) for the writes that
    follow it: ``limit`` for a file in ``folder``, none elsewhere (so $TMPDIR has room).
    """
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    unlimited = resource.getrlimit(resource.RLIMIT_FSIZE)[1]

    def on_open(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            inside = Path(os.fsdecode(args[0])).resolve().parent == folder.resolve()
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit if inside else unlimited, unlimited))

    sys.addaudithook(on_open)


def main(mode: str, data_dir: str, run_dir: str) -> None:
    ckpts = Path(run_dir) / "checkpoints"
    cli = cli_main([
        f"--config={CONFIG_DIR / 'quickstart.yaml'}", "--model.net.init_args.stem_width=8",
        "--model.net.init_args.widths=[32, 64]", "--model.net.init_args.pool_after=[0, 1]",
        f"--data.data_dir={data_dir}", "--data.val_size=40", "--data.num_workers=0",
        "--data.batch_size=16", "--trainer.limit_train_batches=2", "--model.scheduler=null",
        "--trainer.limit_val_batches=2", "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={run_dir}", f"--checkpoint.dirpath={ckpts}",
        "--checkpoint.enable_version_counter=false",
    ], run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    os.rename = _cross_device_rename
    last, best = ckpts / "last.ckpt", ckpts / "best-001.ckpt"
    if mode == "full":
        _fill_folder_after(ckpts, last.stat().st_size // 2)
        try:
            cli.trainer.save_checkpoint(last)
        except OSError as err:
            print(f"SAVE FAILED {err.errno}", flush=True)
        return
    print("READY", flush=True)
    while True:
        cli.trainer.save_checkpoint(last)
        cli.trainer.save_checkpoint(best)


if __name__ == "__main__":
    main(*sys.argv[1:4])
