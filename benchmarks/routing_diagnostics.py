"""Why routers collapse: logit scale, input dependence and per-expert gradient over training.

    python benchmarks/routing_diagnostics.py --epochs 5                  # every variant
    python benchmarks/routing_diagnostics.py --variant old --epochs 5

Builds the slice recipe (``configs/slice.yaml``) through the CLI with the current router
defaults ("default": standardised input, zero-initialised last layer, standardised
logits), without the logit standardisation ("no_logit_norm"; "mi_reg" adds the
mutual-information regulariser at weight 0.05 instead), and with the defaults from
before the fix ("old", ``configs/routing/old_defaults.yaml``), and trains each with the
recipe's loss, optimizer and augmentation in a plain loop, so every router can be
inspected between steps. Per routed block it prints, at initialisation and after every
epoch, on a fixed batch of 256 validation images:

* ``common``: std over experts of the batch-mean logit, the input-independent preference;
* ``input``: mean over experts of the std of the logits over samples, the part that
  depends on the image (``input / common`` is what decides whether routing can specialise);
* ``grad``: each expert's share of the gradient norm of the expert kernels (the last
  training step), so a starved expert shows as a share near 0;
* ``balance``, ``mutual_info``, ``dead`` as ``RoutingAnalytics`` logs them.
"""

import argparse
import json
from pathlib import Path

import torch

from cifar_moe.analysis.routing.stats import summarize
from cifar_moe.cli.main import cli_main
from cifar_moe.models.router import find_routers
from cifar_moe.training.whitening import whiten_from_datamodule

VARIANTS = {
    "default": [],
    "no_logit_norm": ["--model.net.init_args.router_logit_norm=false"],
    "mi_reg": ["--model.net.init_args.router_logit_norm=false",
               "--model.net.init_args.router_aux=mutual_info",
               "--model.net.init_args.router_aux_weight=0.05"],
    "old": ["--config=configs/routing/old_defaults.yaml"],
}


def build(config: str, variant: str, seed: int):
    cli = cli_main(["--config", config, f"--seed_everything={seed}", *VARIANTS[variant]],
                   run=False)
    data = cli.datamodule
    data.setup("fit")
    # A fit sets a whitening stem's filters at its start; this loop is not a fit.
    whiten_from_datamodule(cli.model, data)
    return cli.model, data


def router_stats(model, images) -> list[dict]:
    """Per router: logit scale (common vs input-dependent) and routing health on ``images``."""
    routers = find_routers(model.net)
    logits: list[torch.Tensor] = []
    hooks = [r.mlp.register_forward_hook(lambda m, i, o: logits.append(o.detach().float()))
             for r in routers]
    for r in routers:
        r.record = True
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(images)
    model.train(was_training)
    for h in hooks:
        h.remove()
    rows = []
    for router, z in zip(routers, logits, strict=True):  # z: (B, K)
        health = summarize(router.last_weights.float())
        rows.append({"common": float(z.mean(0).std()), "input": float(z.std(0).mean()),
                     "balance": health["balance"], "mutual_info": health["mutual_info"],
                     "dead": health["dead_fraction"]})
    return rows


def grad_shares(model) -> list[list[float]]:
    """Per routed block: each expert's share of the expert kernels' gradient norm."""
    shares = []
    for router in find_routers(model.net):
        block = next(m for m in model.net.modules() if getattr(m, "router", None) is router)
        grad = block.experts.weight.grad
        norms = torch.stack([g.norm() for g in grad.chunk(router.num_experts, dim=0)])
        shares.append([round(float(v), 3) for v in norms / norms.sum().clamp_min(1e-12)])
    return shares


def train(model, data, epochs: int, probe) -> list[dict]:
    optimizer = model.optimizer_factory(model.parameters())
    steps = epochs * len(data.train_dataloader())
    scheduler = model.scheduler_factory(optimizer, total_steps=steps)
    history = [{"epoch": 0, "routers": router_stats(model, probe)}]
    model.train()
    for epoch in range(1, epochs + 1):
        for batch in data.train_dataloader():
            images, labels = data.on_after_batch_transfer(batch, 0)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model.loss_fn(model(images), labels)
                extra = model.net.aux_loss()  # the routing regulariser, as the module adds it
                loss = loss if extra is None else loss + extra
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        history.append({"epoch": epoch, "loss": float(loss.detach()),
                        "grad_share": grad_shares(model), "routers": router_stats(model, probe)})
        print(format_epoch(history[-1]), flush=True)
    return history


def format_epoch(entry: dict) -> str:
    loss = f"  loss {entry['loss']:.3f}" if "loss" in entry else ""
    lines = [f"epoch {entry['epoch']}{loss}"]
    for i, r in enumerate(entry["routers"]):
        share = entry.get("grad_share", [None] * (i + 1))[i]
        lines.append(f"  block{i}: common {r['common']:.3f} input {r['input']:.3f} "
                     f"balance {r['balance']:.2f} mi {r['mutual_info']:.3f} dead {r['dead']:.2f}"
                     + (f" grad {share}" if share else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/slice.yaml")
    parser.add_argument("--variant", choices=[*VARIANTS, "all"], default="all")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("lightning_logs/routing_diagnostics"))
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    results = {}
    for variant in VARIANTS if args.variant == "all" else [args.variant]:
        model, data = build(args.config, variant, args.seed)
        probe = data.datasets["val"].images[:256]
        probe = torch.stack([data.eval_transform(img) for img in probe])  # (256, 3, 32, 32)
        print(f"== {variant}\n" + format_epoch({"epoch": 0, "routers": router_stats(model, probe)}))
        results[variant] = train(model, data, args.epochs, probe)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"history_{args.variant}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
