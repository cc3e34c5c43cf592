"""A resumed study never keeps a run made from other inputs: recipe files (and the YAML
files they name), overrides, data files and seed are recorded per run and compared on resume;
the --arg list holds a folder once a run has not failed."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from study_records import result_record

from cifar_moe.cli.study import main
from cifar_moe.core.errors import UserError
from cifar_moe.runs.study.extra_args import EXTRA_ARGS, settle_extra_args
from cifar_moe.runs.study.inputs import INPUTS
from cifar_moe.runs.study.plan import ERROR, RESULT, inputs_of, plan
from cifar_moe.runs.study.runner import check_finished_runs
from cifar_moe.runs.study.spec import load_study

PRESET = "class_path: cifar_moe.models.MoENet\ninit_args: {widths: [8, 8], num_experts: 2}\n"
RECIPE = "trainer: {max_epochs: 2}\nmodel:\n  net: presets/tiny.yaml\n"


def _project(root: Path) -> Path:
    """A study folder with a recipe naming a preset; returns the study YAML."""
    (root / "configs" / "presets").mkdir(parents=True)
    (root / "configs" / "presets" / "tiny.yaml").write_text(PRESET)
    (root / "configs" / "recipe.yaml").write_text(RECIPE)
    # The study checks its data_dir before any run; these tests stop before a run reads it.
    (root / "data" / "cifar-10-batches-py").mkdir(parents=True, exist_ok=True)
    spec = {"data": {"data_dir": str(root / "data"), "val_size": 40}, "seeds": [0, 1],
            "out": "out", "args": ["--trainer.limit_train_batches=3"],
            "rows": [{"name": "recipe", "configs": ["configs/recipe.yaml"]}]}
    (root / "study.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root / "study.yaml"


def _finish_seed0(study_path: Path) -> None:
    """Record seed 0 as finished, with the inputs the runner writes before a run."""
    study = load_study(study_path)
    run = plan(study)[0]
    run.folder.mkdir(parents=True)
    (run.folder / INPUTS).write_text(json.dumps(inputs_of(study, run)))
    (run.folder / RESULT).write_text("{}")


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative study paths resolve against the current folder
    path = _project(tmp_path)
    _finish_seed0(path)
    return path


def _refusal(path: Path, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([str(path)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "\n" not in err
    return err


def test_unchanged_inputs_resume(project):
    study = load_study(project)
    check_finished_runs(study, study.rows)  # no error: seed 0 is kept, seed 1 would run
    recorded = json.loads((plan(study)[0].folder / INPUTS).read_text())
    assert [name for name, _ in recorded["configs"]] == [
        "configs/recipe.yaml", "configs/presets/tiny.yaml"]
    assert recorded["data"] == {"val_size": 40} and recorded["seed"] == 0


def test_changed_recipe_file_stops_the_study_in_one_line(project, capsys):
    recipe = project.parent / "configs" / "recipe.yaml"
    recipe.write_text(RECIPE.replace("max_epochs: 2", "max_epochs: 3"))
    out = project.parent / "out"
    assert _refusal(project, capsys) == (
        f"error: 1 finished run in {out} was made from other inputs (recipe, seed 0: "
        "configs/recipe.yaml changed); give another --out, or move those run folders away "
        "to run them again")
    assert not (out / "runs" / "recipe" / "seed1").exists()  # nothing ran
    assert (out / "runs" / "recipe" / "seed0" / RESULT).is_file()  # nothing was lost


def test_render_says_when_finished_runs_are_of_an_older_recipe(project, capsys):
    record = json.dumps(result_record(0.5, [0.4, 0.5]))
    (plan(load_study(project))[0].folder / RESULT).write_text(record)
    (project.parent / "configs" / "recipe.yaml").write_text(RECIPE.replace("2", "3"))
    capsys.readouterr()
    main([str(project), "--render"])  # the tables of what the folders hold, with a warning
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: 1 finished run in "), err
    assert "(recipe, seed 0: configs/recipe.yaml changed)" in err[0]
    assert (project.parent / "out" / "results.md").is_file()


def test_a_changed_preset_named_by_the_recipe_is_seen(project, capsys):
    preset = project.parent / "configs" / "presets" / "tiny.yaml"
    preset.write_text(PRESET.replace("num_experts: 2", "num_experts: 4"))
    assert "(recipe, seed 0: configs/presets/tiny.yaml changed)" in _refusal(project, capsys)


def test_changed_overrides_or_data_settings_are_seen(project, capsys):
    spec = yaml.safe_load(project.read_text())
    spec["args"] = ["--trainer.limit_train_batches=4"]
    project.write_text(yaml.safe_dump(spec))
    assert "(recipe, seed 0: its args changed)" in _refusal(project, capsys)
    spec["args"], spec["data"]["val_size"] = ["--trainer.limit_train_batches=3"], 50
    project.write_text(yaml.safe_dump(spec))
    assert "(recipe, seed 0: its data settings changed)" in _refusal(project, capsys)


def test_the_same_study_in_another_folder_resumes(project, tmp_path, monkeypatch):
    moved = tmp_path / "clone"
    shutil.copytree(project.parent, moved)  # paths differ, contents do not
    monkeypatch.chdir(moved)
    study = load_study(moved / "study.yaml")
    check_finished_runs(study, study.rows)


def test_comments_and_layout_are_not_changes(project):
    recipe = project.parent / "configs" / "recipe.yaml"
    recipe.write_text("# why the recipe is what it is\n" + RECIPE.replace("{max_epochs: 2}",
                                                                            "\n  max_epochs: 2"))
    study = load_study(project)
    check_finished_runs(study, study.rows)


@pytest.mark.parametrize("record", [None, "{not json", "[]"])
def test_runs_without_a_readable_record_are_kept(project, record):
    study = load_study(project)
    path = plan(study)[0].folder / INPUTS
    if record is None:
        path.unlink()  # a run made before inputs were recorded
    else:
        path.write_text(record)
    (project.parent / "configs" / "recipe.yaml").write_text(RECIPE.replace("2", "5"))
    check_finished_runs(study, study.rows)  # nothing to compare against


def test_check_covers_only_the_rows_being_run(project):
    (project.parent / "configs" / "recipe.yaml").write_text(RECIPE.replace("2", "5"))
    study = load_study(project)
    with pytest.raises(UserError):
        check_finished_runs(study, study.rows)
    check_finished_runs(study, [])  # --row for other rows leaves this one alone


def test_other_data_in_the_same_data_dir_is_seen(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    batches = tmp_path / "data" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    (batches / "data_batch_1").write_bytes(b"the slice's images")
    path = _project(tmp_path)
    _finish_seed0(path)
    study = load_study(path)
    (batches / ".DS_Store").write_bytes(b"a file browser's")  # not the dataset's
    check_finished_runs(study, study.rows)  # same files: resumes
    (batches / "data_batch_1").write_bytes(b"the full CIFAR-10's images")  # same path
    assert "(recipe, seed 0: the files in its data_dir changed)" in _refusal(path, capsys)
    record = plan(study)[0].folder / INPUTS  # as recorded before data files were hashed
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items()
                                  if k != "data_files"}))
    check_finished_runs(study, study.rows)  # nothing to compare the files against: kept


def test_a_mistyped_arg_is_corrected_while_every_run_failed(tmp_path):
    out = tmp_path / "out"
    assert settle_extra_args(out, ["--trainer.max_epoch=3"], render=False)
    (out / "runs" / "row" / "seed0").mkdir(parents=True)
    (out / "runs" / "row" / "seed0" / ERROR).write_text("{}")  # every run failed
    fixed = ["--trainer.max_epochs=3"]
    assert settle_extra_args(out, fixed, render=False) == fixed  # accepted
    assert settle_extra_args(out, [], render=True) == fixed  # --render lists the new one
    (out / "runs" / "row" / "seed1").mkdir(parents=True)  # running, or finished
    for done in (False, True):
        if done:
            (out / "runs" / "row" / "seed1" / RESULT).write_text("{}")
        with pytest.raises(UserError, match=r"were made with --trainer\.max_epochs=3"):
            settle_extra_args(out, ["--trainer.max_epochs=4"], render=False)
    (out / EXTRA_ARGS).write_text("{not json")
    with pytest.raises(UserError, match=r"extra_args\.json is unreadable; delete it"):
        settle_extra_args(out, fixed, render=False)
