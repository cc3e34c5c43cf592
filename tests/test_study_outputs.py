"""Nothing a study user has is lost or surprising (issue 36): a re-render of committed results
keeps them byte for byte; results name paths relative to the project; a typo in data_dir is
one line before any run (no download attempt, no folder made)."""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from cifar_moe.cli.study import main
from cifar_moe.runs.study import paths
from cifar_moe.runs.study.plan import plan
from cifar_moe.runs.study.spec import load_study

REPO_ROOT = Path(__file__).resolve().parents[1]
STUDIES = REPO_ROOT / "docs" / "studies"
# Finished studies: a study still running in its committed folder (the routing study keeps
# its run records there, see the root .gitignore) renders from those runs instead.
COMMITTED = sorted(p.name for p in STUDIES.iterdir()
                   if (p / "results.json").is_file() and not (p / "runs").is_dir())
QUICK = str(REPO_ROOT / "configs" / "quickstart.yaml")
ABSOLUTE = re.compile(r"(?<![\w.])/(?:work|tmp|root|home|Users|mnt|private|var)/")


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", COMMITTED)
def test_render_of_a_committed_study_keeps_it_byte_for_byte(name, tmp_path, monkeypatch,
                                                             capsys):
    copy = tmp_path / name
    shutil.copytree(STUDIES / name, copy)
    before = _tree(copy)
    monkeypatch.chdir(REPO_ROOT)
    assert main(["configs/studies/slice_v1.yaml", "--out", str(copy), "--render"]) == 0
    assert _tree(copy) == before  # not a byte changed, no file added (no lock, no runs/)
    out = capsys.readouterr().out.strip().splitlines()
    kept = ", ".join(n for n in ("results.json", "results.md", "curves.png")
                     if (copy / n).is_file())
    assert out == [f"{copy} has no run folders to render from; kept {kept} unchanged"]


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            if not key.startswith("val_correct"):  # packed bits: base64 may begin with '/'
                yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_no_committed_study_file_holds_an_absolute_path():
    files = [p for p in STUDIES.rglob("*") if p.suffix in (".md", ".json")]
    assert len(files) > 30  # every study's results, not an empty glob
    for path in files:
        text = path.read_text()
        assert not ABSOLUTE.search(text), f"{path}: {ABSOLUTE.search(text).group()}"
        if path.suffix == ".json":
            for value in _strings(json.loads(text)):
                # a whole path, or one after '=' (--config=...): never from the root
                assert not value.startswith("/") and "=/" not in value, (path, value)


def test_paths_are_written_relative_to_the_project(tmp_path):
    root = tmp_path / "proj"
    value = {"study": f"{root}/configs/studies/s.yaml", "root": str(root),
             "argv": [f"{root}/.venv/bin/python", f"--config={root}/configs/x.yaml"],
             "run": {"argv": ["/opt/torch/bin/python3", "-m", "x"]},
             "md": f"data_dir={tmp_path}/shared/data, other {root}x/y",
             "elsewhere": "/opt/data/cifar", "longer": f"/mnt{root}/z"}
    assert paths.portable(value, root) == {
        "study": "configs/studies/s.yaml", "root": ".",
        "argv": [".venv/bin/python", "--config=configs/x.yaml"],
        "run": {"argv": ["python3", "-m", "x"]},  # that machine's interpreter: its name
        "md": "data_dir=../shared/data, other ../projx/y",  # beside the project: ../
        "elsewhere": "/opt/data/cifar",  # nothing relative would help a reader
        "longer": f"/mnt{root}/z"}  # not a path under the root, only ending like one
    assert paths.project_root() == REPO_ROOT


def test_a_new_render_names_paths_relative_to_the_project(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "project_root", lambda: tmp_path)
    monkeypatch.chdir(tmp_path)
    Path("s.yaml").write_text(yaml.safe_dump({
        "data": {"data_dir": "data"}, "seeds": [0], "rows": [{"name": "a", "configs": [QUICK]}]}))
    run = plan(load_study("s.yaml"))[0].folder
    run.mkdir(parents=True)
    (run / "error.json").write_text(json.dumps({"error": "x", "argv": [f"{run}/x"]}))
    assert main(["s.yaml", "--render"]) == 1
    results = json.loads(Path("lightning_logs/studies/s/results.json").read_text())
    assert (results["study"], results["data"]["data_dir"]) == ("s.yaml", "data")
    assert results["rows"][0]["runs"][0]["argv"] == ["lightning_logs/studies/s/runs/a/seed0/x"]
    md = Path("lightning_logs/studies/s/results.md").read_text()
    assert md.startswith("# Study `s.yaml`") and "data_dir=data." in md


# --- data_dir, once, before any run ------------------------------------------------------


@pytest.mark.parametrize("case", ["typo", "batch folder", "no data, no download"])
def test_a_bad_data_dir_is_one_line_before_anything_is_made(case, synthetic_data_dir,
                                                             tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = {"typo": "sythetic", "batch folder": str(synthetic_data_dir / "cifar-10-batches-py"),
            "no data, no download": "empty"}[case]
    Path("empty").mkdir()
    spec = {"data": {"data_dir": data, **({"download": False} if case != "typo" else {})},
            "seeds": [0, 1], "out": "out", "rows": [{"name": "a", "configs": [QUICK]}]}
    Path("s.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit) as info:
        main(["s.yaml"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1, err
    expected = {
        "typo": f"error: s.yaml data data_dir: {tmp_path / 'sythetic'} does not exist; fix "
                f"the path (a relative one resolves against the current folder, {tmp_path})",
        "batch folder": f"error: s.yaml data data_dir: {data} is the batch folder itself; "
                        f"give the folder that holds it, {synthetic_data_dir}",
        "no data, no download": f"error: s.yaml data data_dir: {tmp_path / 'empty'} has no "
                                "cifar-10-batches-py/ and data.download is false; put "
                                "cifar-10-python.tar.gz or the extracted cifar-10-batches-py/ "
                                "there"}[case]
    assert err[0] == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "s.yaml"]  # nothing made
    assert not any(Path("empty").iterdir())
