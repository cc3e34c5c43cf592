"""The data settings' own checks: each bad value or empty split is one line that names the
setting (or the files) and what to do, raised before anything is read or written."""

from pathlib import Path

from cifar_moe.core.errors import UserError


def check_not_empty(folder: Path, n_train: int, n_test: int, stage: str | None) -> None:
    """An empty split is no setting's fault: one line naming the files, not val_size."""
    if n_train == 0:  # the validation split is cut from it at every stage
        raise UserError(f"{folder} holds no training images (data_batch_1..5 are empty); "
                        "point data.data_dir at a folder with images")
    if n_test == 0 and stage == "test":
        raise UserError(f"{folder}/test_batch holds no images; point data.data_dir at a "
                        "folder with test images")


def check_settings(h) -> None:
    """One line per bad setting, raised before anything is read or written."""
    checks = [
        (h.batch_size >= 1, "data.batch_size", h.batch_size, "use 1 or more"),
        (h.eval_batch_size is None or h.eval_batch_size >= 1, "data.eval_batch_size",
         h.eval_batch_size, "use 1 or more, or null"),
        (h.val_size >= 0, "data.val_size", h.val_size, "use 0 (test set) or more"),
        (h.num_workers >= 0, "data.num_workers", h.num_workers, "use 0 or more"),
        (h.predict_dir is None or Path(h.predict_dir).is_dir(), "data.predict_dir",
         h.predict_dir, "pass an existing folder of PNG/JPEG images"),
    ]
    for ok, name, value, fix in checks:
        if not ok:
            raise UserError(f"{name} is {value}; {fix}")
