"""``bench_suite.py`` without ``--tiled``: data paths against synthetic data, per network.

Table 1 (augmentation only): training img/s of the classic per-image DataLoader path
(2 workers) and of the device-resident batch path, with each recipe's augmentation.
Table 2 (training): img/s of forward + backward + SGD step at each recipe's batch size, fed
by (a) synthetic tensors, (b) the classic path, (c) the device path; the ratio of each path
to synthetic; a 50,000-image epoch **projected** as 50,000 / synthetic img/s; peak memory of
a fresh process per row. Precision and layout are the recipe's ``auto`` choices for the
device. Data: a generated folder in the CIFAR layout (timing does not depend on pixels).
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from _checkout import CONFIG_DIR
from _timing import (
    autocast_for,
    device_name,
    forward_flops,
    median_rate,
    mfu,
    peak_memory_mb,
    synthetic_train_rate,
)

from cifar_moe.cli.main import cli_main
from cifar_moe.core.hardware import facts_for_device, settle
from cifar_moe.data import write_synthetic_cifar

ROWS = {  # row: the configs layered for it, as a user layers them
    "seed_a": ["mixup_cosine"],
    "seed_b": ["focal_onecycle"],
    "k1_control": ["focal_onecycle", "controls/k1"],
    "resnet18": ["focal_onecycle", "controls/resnet18"],
}


def instantiate(configs: list[str], data_dir: str, device_augment: bool, workers: int = 2):
    """The recipe's data module (set up) and network, as the CLI builds them."""
    args = [f"--config={CONFIG_DIR / c}.yaml" for c in configs]
    cli = cli_main([*args, f"--data.data_dir={data_dir}", "--data.val_size=0",
                    f"--data.num_workers={workers}", f"--data.device_augment={device_augment}"],
                   run=False)
    cli.datamodule.setup("fit")
    return cli


def batches(dm, device):
    """Endless (images, labels) on ``device`` through the data module's own train path."""
    while True:
        for batch in dm.train_dataloader():
            batch = batch.to(device) if torch.is_tensor(batch) else [t.to(device) for t in batch]
            yield dm.on_after_batch_transfer(batch, 0)


def row_child(name: str, data_dir: str, out: str, iters: int) -> None:
    """One table-2 row in this (fresh) process; results written to ``out`` as JSON."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    facts = facts_for_device(device)
    torch.manual_seed(0)
    cli = instantiate(ROWS[name], data_dir, device_augment=False)
    net, batch = cli.model.net.to(device), cli.datamodule.hparams.batch_size
    precision = settle(cli.config.trainer.precision, "precision", facts)
    channels_last = settle(cli.model.speed_settings["channels_last"], "channels_last", facts)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step(images, labels):
        opt.zero_grad(set_to_none=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_for(precision, device):
            loss = torch.nn.functional.cross_entropy(net(images).float(), labels)
        loss.backward()
        opt.step()

    result = {"batch": batch, "synthetic": synthetic_train_rate(
        net, batch, iters, 5, device, precision, channels_last)}
    for path, on_device in (("classic", False), ("device", True)):
        source = batches(instantiate(ROWS[name], data_dir, on_device).datamodule, device)
        result[path] = median_rate(lambda s=source: step(*next(s)), batch, iters, 5, device)
    result["peak_mb"] = peak_memory_mb(device)
    result["mfu"] = mfu(forward_flops(net, device), result["synthetic"], device_name(device),
                        precision)
    Path(out).write_text(json.dumps(result))


def augment_table(data_dir: str, iters: int) -> list[str]:
    lines = ["| augmentation | classic, 2 workers img/s | device path img/s | device / classic |",
             "|---|---|---|---|"]
    for row in ("seed_a", "seed_b"):
        rates = []
        for on_device in (False, True):
            dm = instantiate(ROWS[row], data_dir, on_device).datamodule
            dm.hparams.batch_size = 256  # one batch size, so only the augmentation differs
            source = batches(dm, "cpu")
            rates.append(median_rate(lambda s=source: next(s), 256, iters * 3, 5, "cpu"))
        lines.append(f"| {ROWS[row][0]} aug | {rates[0]:.0f} | {rates[1]:.0f} | "
                     f"{rates[1] / rates[0]:.1f}x |")
    return lines


def path_rows(iters: int) -> list[str]:
    """Both tables, each table-2 row from a fresh process (stderr passes through)."""
    data_dir = tempfile.mkdtemp()
    write_synthetic_cifar(data_dir, train_per_batch=1000, test_size=100)
    where = device_name("cuda" if torch.cuda.is_available() else "cpu")
    lines = [f"device: {where}, torch {torch.__version__}, {torch.get_num_threads()} threads",
             "", *augment_table(data_dir, iters), "",
             "| network | batch | synthetic img/s | classic img/s (ratio) | device img/s (ratio) "
             "| 50k epoch, projected | peak memory | MFU |", "|---|---|---|---|---|---|---|---|"]
    for name in ROWS:
        out = Path(data_dir) / f"{name}.json"
        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_suite.py")),
                        "--row", name, data_dir, str(out), "--iters", str(iters)],
                       check=True)
        r = json.loads(out.read_text())
        s, m = r["synthetic"], "unknown" if r["mfu"] is None else f"{r['mfu']:.1%}"
        lines.append(f"| {name} | {r['batch']} | {s:.1f} | {r['classic']:.1f} "
                     f"({r['classic'] / s:.2f}) | {r['device']:.1f} ({r['device'] / s:.2f}) | "
                     f"{50_000 / s:.0f} s | {r['peak_mb']:.0f} MB | {m} |")
    return lines
