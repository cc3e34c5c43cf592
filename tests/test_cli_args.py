"""Unit: reading a setting back out of a written command line (core/cli_args.py), and the
CLI's use of it to let a data folder on the command line beat $CIFAR_MOE_DATA."""

import pytest
from jsonargparse import Namespace

from cifar_moe.cli.run_checks import apply_data_env
from cifar_moe.core.cli_args import arg_values, sets
from cifar_moe.data.download import DATA_ENV


def test_both_forms_in_order_and_a_longer_name_is_another_setting():
    args = ["fit", "--data.val_fold=3", "--data.val_folds=9", "--data.val_fold", "4",
            "--trainer.max_epochs=2"]
    assert arg_values(args, "data.val_fold") == ["3", "4"]
    assert arg_values(args, "data.val_folds") == ["9"]
    assert arg_values(args, "trainer.max_epochs") == ["2"]


def test_a_flag_without_its_value_and_an_absent_one_give_nothing():
    assert arg_values(["--data.val_fold"], "data.val_fold") == []
    assert arg_values(["--data.batch_size=8"], "data.val_fold") == []
    assert arg_values([], "data.val_fold") == []


def test_a_value_with_an_equals_sign_is_kept_whole():
    assert arg_values(["--model.net.init_args.name=a=b"], "model.net.init_args.name") == ["a=b"]


def test_a_flag_is_set_with_or_without_its_value_and_a_longer_name_is_not_it():
    assert sets(["--data.val_fold"], "data.val_fold")  # the value missing: still given
    assert sets(["--data.val_fold=3"], "data.val_fold")
    assert not sets(["--data.val_folds=3", "--data.batch_size=8"], "data.val_fold")


@pytest.mark.parametrize("argv, kept", [
    ([], False),
    (["--data.data_dir=/mine"], True),
    (["--data.data_dir", "/mine"], True),
    (["--data=data.yaml"], True),
    (["--data", "data.yaml"], True),  # the space form: it used to lose to the variable
    (["--data.batch_size=64"], False),
])
def test_the_data_variable_yields_to_a_data_folder_on_the_command_line(monkeypatch, argv, kept):
    monkeypatch.setenv(DATA_ENV, "/from/env")
    config = Namespace(data=Namespace(data_dir="/from/config"))
    apply_data_env(config, argv)
    assert config.data.data_dir == ("/from/config" if kept else "/from/env")
