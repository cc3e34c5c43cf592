"""Study YAML: validation as one line, paths relative to the current folder, run plan and
child command, one-line errors of failed runs."""

from pathlib import Path

import pytest
import yaml

from cifar_moe.cli import argument_problem
from cifar_moe.cli.study import main
from cifar_moe.core.errors import UserError
from cifar_moe.runs.study import child, runner
from cifar_moe.runs.study.child import one_line_error
from cifar_moe.runs.study.lock import hold_out_folder
from cifar_moe.runs.study.plan import child_command, plan
from cifar_moe.runs.study.runner import pick_rows, run_study
from cifar_moe.runs.study.spec import load_study

QUICK = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")


# --- the study YAML -------------------------------------------------------------------

GOOD_ROW = {"name": "a", "configs": [QUICK]}
BAD = {
    "missing rows": ({"data": {}, "seeds": [0]}, "missing key 'rows'"),
    "empty rows": ({"data": {}, "seeds": [0], "rows": []}, "rows: expected a non-empty list"),
    "unknown key": ({"data": {}, "seed": [0], "rows": [GOOD_ROW]}, "unknown key 'seed'"),
    "no seeds": ({"data": {}, "seeds": [], "rows": [GOOD_ROW]}, "seeds: expected"),
    "negative seed": ({"data": {}, "seeds": [-1], "rows": [GOOD_ROW]}, "from 0 to 2**32 - 1"),
    "seed too large": ({"data": {}, "seeds": [2**32], "rows": [GOOD_ROW]}, "from 0 to"),
    "missing config": ({"data": {}, "seeds": [0], "rows": [{"name": "a", "configs": [
        "configs/nope.yaml"]}]}, "rows[0] configs: configs/nope.yaml not found"),
    "duplicate names": ({"data": {}, "seeds": [0], "rows": [GOOD_ROW, {
        "name": "A", "configs": [QUICK]}]}, "give every row a distinct name"),
    "row without name": ({"data": {}, "seeds": [0], "rows": [{"configs": [QUICK]}]},
                         "rows[0]: missing key 'name'"),
    "arg not an override": ({"data": {}, "seeds": [0], "rows": [{**GOOD_ROW, "args": [
        "trainer.max_epochs=3"]}]}, "rows[0] args: 'trainer.max_epochs=3' is not"),
    "data not a mapping": ({"data": ["x"], "seeds": [0], "rows": [GOOD_ROW]}, "data:"),
    "data_dir null": ({"data": {"data_dir": None}, "seeds": [0], "rows": [GOOD_ROW]},
                      "data data_dir: expected a folder path"),  # not a folder named 'None'
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_study_yaml_is_one_line(case, tmp_path, capsys):
    content, expected = BAD[case]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**content, "out": str(tmp_path / "out")}))
    with pytest.raises(SystemExit) as info:
        main([str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: study.yaml") and expected in err[0], err
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.parametrize(("text", "expected"), [
    ("data: [unclosed\n", "not valid YAML"), ("- just a list\n", "expected a mapping"),
    ("data: {}\nseeds: [0]\nout: 5\nrows: [{name: a, configs: [x.yaml]}]\n",
     "out: expected a folder path"),
    ("1: x\nfoo: y\n", "unknown key 1"),  # keys of mixed types
    ("data: {}\nseeds: [0]\nrows: [{name: caf\xe9, configs: [x.yaml]}]\n".encode("latin-1"),
     "not valid YAML")])
def test_unreadable_study_yaml_is_one_line(text, expected, tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SystemExit) as info:
        main([str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and expected in err[0], err


def test_second_study_process_on_one_out_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"data": {}, "seeds": [0], "rows": [GOOD_ROW],
                                    "out": str(out)}))
    running = hold_out_folder(out)  # what the first study process holds while it runs
    try:
        with pytest.raises(SystemExit) as info:
            main([str(path)])  # it would wipe the first one's half-finished run folders
    finally:
        running.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err == [
        f"error: another study process is running in {out}; wait for it to end, "
        "or give another --out"]
    assert sorted(p.name for p in out.iterdir()) == [".study.lock"]  # nothing else written
    hold_out_folder(out).close()  # released: the next study process gets the folder


@pytest.mark.parametrize("render", [False, True])
def test_out_that_is_a_file_is_one_line(render, tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"data": {}, "seeds": [0], "rows": [GOOD_ROW]}))
    taken = tmp_path / "results"
    taken.write_text("someone's notes")
    with pytest.raises(SystemExit) as info:
        main([str(path), "--out", str(taken), *(["--render"] if render else [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err == [
        f"error: out {taken} is a file; give a folder path (the YAML's out or --out)"]
    assert taken.read_text() == "someone's notes"


def test_relative_paths_resolve_against_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yaml").write_text("trainer: {max_epochs: 1}\n")
    Path("s.yaml").write_text(yaml.safe_dump({
        "data": {"data_dir": "data", "val_size": 40}, "seeds": [0, 1],
        "args": ["--trainer.max_epochs=2"],
        "rows": [{"name": "Row A!", "configs": ["cfg.yaml"], "args": ["--x=1"], "seeds": [1]},
                 {"name": "row b", "configs": ["cfg.yaml"]}]}))
    study = load_study("s.yaml")
    assert study.out == tmp_path / "lightning_logs" / "studies" / "s"
    assert study.data["data_dir"] == str(tmp_path / "data")
    assert [r.slug for r in study.rows] == ["row-a", "row-b"]
    runs = plan(study)  # seed by seed; row A only at its own seed 1
    assert [(r.row.slug, r.seed) for r in runs] == [("row-b", 0), ("row-a", 1), ("row-b", 1)]
    assert runs[1].folder == study.out / "runs" / "row-a" / "seed1"
    cmd = child_command(study, runs[1], threads=None)
    tail = cmd[cmd.index("--") + 1:]
    assert tail == [f"--config={tmp_path / 'cfg.yaml'}", f"--data.data_dir={tmp_path / 'data'}",
                    "--data.val_size=40", "--trainer.max_epochs=2", "--x=1",
                    "--seed_everything=1", "--trainer.enable_progress_bar=false"]
    assert "--threads" not in cmd and "--threads" in child_command(study, runs[1], threads=3)


def test_arg_adds_an_override_to_every_run_after_the_yamls(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("s.yaml").write_text(yaml.safe_dump({
        "data": {}, "seeds": [0], "args": ["--trainer.max_epochs=2"],
        "rows": [{"name": "a", "configs": [QUICK], "args": ["--x=1"]}]}))
    study = load_study("s.yaml", extra_args=["--trainer.accelerator=gpu"])
    cmd = child_command(study, plan(study)[0], threads=None)
    tail = cmd[cmd.index("--") + 1:]
    assert tail.index("--trainer.max_epochs=2") < tail.index("--trainer.accelerator=gpu") \
        < tail.index("--x=1")  # the study's args, then --arg, then the row's own
    with pytest.raises(SystemExit) as info:
        main(["s.yaml", "--arg", "trainer.accelerator=gpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and err[0].startswith("error: --arg"), err


def test_one_line_error_prefers_the_error_line():
    text = "warning: x\nerror: data.data_dir: put the files there\n\nTraceback...\n  more\n"
    assert one_line_error(text, 2) == "data.data_dir: put the files there"
    assert one_line_error("Traceback\n  File x\nValueError: bad\n\n", 1) == "ValueError: bad"
    assert one_line_error("", -9) == "killed by signal 9"
    assert one_line_error("Epoch 3: 40%\n", -9) == "killed by signal 9"  # not its last output


# --- the report, from run folders written by hand -------------------------------------


def test_row_runs_only_the_named_rows_and_names_the_known_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("s.yaml").write_text(yaml.safe_dump({
        "data": {}, "seeds": [0, 1],
        "rows": [{"name": "A row", "configs": [QUICK]}, {"name": "b", "configs": [QUICK]}]}))
    study = load_study("s.yaml")
    assert pick_rows(study, []) == study.rows
    assert pick_rows(study, ["a-row"]) == pick_rows(study, ["A row"]) == study.rows[:1]
    started = []

    def stand_in(study, run, threads, on_wait=None):  # records the run instead of training it
        started.append(run.folder.parts[-2:])
        run.folder.mkdir(parents=True)
        (run.folder / "result.json").write_text('{"test_acc": 0.5, "fit_seconds": 1}')

    monkeypatch.setattr(child, "execute", stand_in)
    assert run_study(study, 1, pick_rows(study, ["b"])) == 0
    assert started == [("b", "seed0"), ("b", "seed1")]
    with pytest.raises(SystemExit) as info:
        main(["s.yaml", "--row", "c"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err == [
        "error: --row 'c' is not a row of s.yaml; use one of 'A row', 'b'"]
    assert not (study.out / "extra_args.json").exists()  # a refused run records nothing


def test_threads_per_run_share_the_cores_this_process_may_use(monkeypatch):
    # e.g. `taskset -c 0-3` on a 64-core host: 2 jobs get 2 threads each, not 32
    monkeypatch.setattr(child.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(child.os, "cpu_count", lambda: 64)
    assert child.threads_per_run(2) == 2 and child.threads_per_run(8) == 1
    assert child.threads_per_run(1) is None  # one run alone: torch's own default


def test_row_check_parses_the_runs_own_argv_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "not" / "created"  # the run's own folder overrides it
    Path("s.yaml").write_text(yaml.safe_dump({"data": {}, "seeds": [0], "rows": [
        {"name": "a", "configs": [QUICK], "args": [f"--trainer.default_root_dir={elsewhere}"]}]}))
    study = load_study("s.yaml")
    # passes: what the child would run
    runner.check_row_arguments(study, study.rows, argument_problem)
    assert not elsewhere.parent.exists() and not study.out.exists()


def test_help_in_a_row_is_one_line_and_prints_nothing_else(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("s.yaml").write_text(yaml.safe_dump({"data": {}, "seeds": [0], "rows": [
        {"name": "a", "configs": [QUICK], "args": ["--print_config"]}]}))
    with pytest.raises(SystemExit) as info:
        main(["s.yaml"])
    captured = capsys.readouterr()
    assert info.value.code == 2 and captured.out == ""
    assert captured.err.strip() == ("error: row 'a': --print_config would print and exit "
                                    "instead of running; remove it; no run was started")


def test_out_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "notes").write_text("a file where a folder would go")
    with pytest.raises(UserError, match=r"^out .*/notes/out cannot be written \(Not a direc"):
        hold_out_folder(tmp_path / "notes" / "out")
