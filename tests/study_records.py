"""A finished run's ``result.json`` as the study child writes it, for tests of the report."""


def result_record(acc: float, curve: list[float], routing: dict | None = None) -> dict:
    """The fields the report reads, for a run with test accuracy ``acc`` and val ``curve``."""
    return {"test_acc": acc, "val_acc_curve": curve, "val_epochs": list(range(len(curve))),
            "best_val_acc": max(curve), "best_epoch": curve.index(max(curve)),
            "epochs_run": len(curve), "fit_seconds": 10.0, "train_img_per_s": 100.0,
            "routing": routing or {}}
