"""A finished run's ``result.json`` as the study child writes it, for tests of the report."""

from pathlib import Path

from cifar_moe.runs.study.stats import pack_bits


def result_record(acc: float, curve: list[float], routing: dict | None = None) -> dict:
    """The fields the report reads, for a run with test accuracy ``acc`` and val ``curve``."""
    return {"test_acc": acc, "val_acc_curve": curve, "val_epochs": list(range(len(curve))),
            "best_val_acc": max(curve), "best_epoch": curve.index(max(curve)),
            "epochs_run": len(curve), "fit_seconds": 10.0, "train_img_per_s": 100.0,
            "routing": routing or {}}


def fold_record(bits: str, fit_seconds: float = 60.0) -> dict:
    """A fold run whose final model got the validation images right where ``bits`` ("1101")
    has a 1: its final (and best) val acc is their mean, as the recorder writes them."""
    correct = [int(b) for b in bits]
    acc = sum(correct) / len(correct)
    return {**result_record(0.5, [acc / 2, acc]), "final_val_acc": acc,
            "fit_seconds": fit_seconds, "val_images": len(correct),
            "val_correct_final": pack_bits(correct), "val_correct_best": pack_bits(correct)}


def scored_test_tags(run: Path) -> list[str]:
    """The test-stage tags (``test/acc``, ...) in the run's TensorBoard events. Not a byte
    search: the hparams record names test/acc as a metric of every run, tested or not."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = {path.parent for path in run.rglob("events.out.tfevents*")}
    assert logs, f"{run} has no TensorBoard events to look in"
    tags = []
    for log in logs:
        events = EventAccumulator(str(log), size_guidance={"scalars": 0, "images": 0})
        events.Reload()
        tags += [tag for kind in ("scalars", "images") for tag in events.Tags()[kind]]
    return [tag for tag in tags if tag.startswith("test/")]
