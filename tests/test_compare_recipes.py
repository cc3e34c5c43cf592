"""The adoption check on stored bench_peer results: pairs by (fold, seed), the protocol's
"mean gain > 2 SE over >= 5 pairs" rule, and the refusal of unpaired folds."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare_recipes


def write_fits(folder: Path, accs: list[float], config: str, fold_of=lambda s: s,
               routing_of=lambda s: {}) -> Path:
    folder.mkdir()
    for seed, acc in enumerate(accs):
        result = {"settings": {"trainer": "template", "seed": seed, "fold": fold_of(seed),
                               "epochs": 40, "config": config},
                  "val_acc": acc, "test_acc": None, "wall_s": 600.0,
                  "detail": {"routing": routing_of(seed)}}
        (folder / f"template_seed{seed}.json").write_text(json.dumps(result))
    return folder


def run(tmp_path, incumbent, candidate, capsys, routing_of=lambda s: {}, **kw) -> list[str]:
    a = write_fits(tmp_path / "a", incumbent, "configs/slice.yaml", **kw)
    b = write_fits(tmp_path / "b", candidate, "configs/candidates/x.yaml",
                   routing_of=routing_of)
    compare_recipes.main([str(a), str(b)])
    return capsys.readouterr().out.splitlines()


def test_a_steady_gain_is_adopted(tmp_path, capsys):
    lines = run(tmp_path, [0.70, 0.72, 0.71, 0.73, 0.72], [0.80, 0.83, 0.81, 0.82, 0.84],
                capsys)
    assert lines[-1].startswith("ADOPT: mean gain +10.40 points > 2 SE")
    assert "(5 folds: +10.0, +11.0, +10.0, +9.0, +12.0)" in lines[-3]


def healthy(block: int, **low) -> dict[str, float]:
    metrics = {"balance": 0.97, "mutual_info": 0.12, "dead_fraction": 0.0} | low
    return {f"route/block{block}/{k}": v for k, v in metrics.items()} | {"route/tau": 1.0}


def test_a_gain_with_one_block_below_the_health_bar_keeps_the_incumbent(tmp_path, capsys):
    lines = run(tmp_path, [0.70, 0.72, 0.71, 0.73, 0.72], [0.80, 0.83, 0.81, 0.82, 0.84],
                capsys, routing_of=lambda s: healthy(3, mutual_info=0.03 if s == 2 else 0.05)
                | healthy(5))
    assert lines[-2].endswith("5 of 5 fits recorded it): seed 2: block3 mutual_info 0.030 "
                              "below the bar")
    assert lines[-1] == ("keep the incumbent: routing below the health bar (the accuracy "
                         "rule alone passes: mean gain +10.40 points > 2 SE = 1.02 over 5 "
                         "pairs)")


def test_the_health_line_says_when_no_fit_recorded_routing(tmp_path, capsys):
    lines = run(tmp_path, [0.70] * 5, [0.80, 0.83, 0.81, 0.82, 0.84], capsys)
    assert lines[-2].endswith("0 of 5 fits recorded it): nothing to check")
    assert lines[-1].startswith("ADOPT")


def test_a_noisy_gain_keeps_the_incumbent(tmp_path, capsys):
    # differences +3, -2, +2, -1, +1 points: mean +0.6, SE 0.93
    lines = run(tmp_path, [0.80] * 5, [0.83, 0.78, 0.82, 0.79, 0.81], capsys)
    assert lines[-1].startswith("keep the incumbent: mean gain +0.60 points <= 2 SE = 1.")


def test_fewer_than_five_pairs_decide_nothing(tmp_path, capsys):
    lines = run(tmp_path, [0.70] * 4, [0.90] * 4, capsys)
    assert lines[-1].startswith("not decided: 4 pairs, the protocol needs at least 5; ")


def test_the_gain_still_needed_matches_a_hand_calculation():
    # +1.0, +1.2, +0.9 then -0.11 twice: mean 0.576 > 2 SE 0.569 (passes); with -0.12
    # twice: mean 0.572 <= 2 SE 0.573 (fails). So -0.11 is the lowest passing mean.
    assert compare_recipes.passing_gains([1.0, 1.2, 0.9])[0] == -0.11
    assert "mean gain is in [-0.11, " in compare_recipes.verdict([1.0, 1.2, 0.9])


def test_the_passing_range_is_bounded_above_with_one_pair_missing():
    # four pairs at +0.5: a fifth of +3.0 gives mean 1.00 = 2 SE 1.00 (fails, +2.99 passes),
    # and +4 fails (mean 1.20 <= 2 SE 1.40): a bigger gain is not always better.
    low, high = compare_recipes.passing_gains([0.5] * 4)
    assert high == 2.99 and -0.4 < low < -0.3
    assert not compare_recipes.passes([0.5] * 4 + [4.0])
    with pytest.raises(ValueError, match="nothing is missing"):
        compare_recipes.passing_gains([0.5] * 5)


def test_futility_is_reported_when_no_hoped_for_gain_can_pass():
    # Cutout's first three pairs: a gain up to +5 on both missing pairs cannot pass
    # (at +5 each: mean +1.38, 2 SE 3.18; larger equal gains on two pairs never pass).
    assert compare_recipes.passing_gains([0.8, -2.9, -1.0]) is None
    assert compare_recipes.verdict([0.8, -2.9, -1.0]).endswith(
        "no mean gain up to +5.0 points on the missing pairs passes")
    # two pairs at -3 with three missing: +50 each passes (mean 28.8 > 2 SE 26.0), so
    # there the cap decides
    assert compare_recipes.passing_gains([-3.0, -3.0]) is None
    assert 20 < compare_recipes.passing_gains([-3.0, -3.0], cap=60.0)[0] < 50


def test_a_fit_on_another_fold_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit, match="seed 1: folds \\[1, 2\\]; pairs must hold out"):
        run(tmp_path, [0.7] * 5, [0.8] * 5, capsys, fold_of=lambda s: 2 if s == 1 else s)


def test_a_folder_mixing_recipes_or_data_is_refused(tmp_path, capsys):
    a = write_fits(tmp_path / "a", [0.7] * 5, "configs/slice.yaml")
    b = write_fits(tmp_path / "b", [0.8] * 5, "configs/candidates/x.yaml")
    smoke = json.loads((a / "template_seed2.json").read_text())
    smoke["settings"]["epochs"] = 1
    (a / "template_seed2.json").write_text(json.dumps(smoke))
    with pytest.raises(SystemExit, match="incumbent: the fits differ in config"):
        compare_recipes.main([str(a), str(b)])
    smoke["settings"]["epochs"] = 40
    (a / "template_seed2.json").write_text(json.dumps(smoke))
    for path in b.glob("*.json"):  # the candidate ran on other images
        fit = json.loads(path.read_text())
        fit["settings"]["data"] = "another hash"
        path.write_text(json.dumps(fit))
    with pytest.raises(SystemExit, match="ran on different data"):
        compare_recipes.main([str(a), str(b)])
