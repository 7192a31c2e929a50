"""The recipes of fairseq_compress/config/ as fairseq-train flags (fairseq_compress/recipes.py): fairseq's own
parser turns the flags back into the recipe's values, so fairseq-train through the pipelines and
fairseq-hydra-train on the file train the same run; the pipelines read them."""
import os
import sys
from pathlib import Path

import pytest
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from conftest import ROOT, USER_DIR, one_line_error, run
from fairseq_compress import recipes

RECIPES = ["mt_en_fr", "cls_finetune", "mlm_pretrain", "electra_pretrain"]


def parsed_config(name, data):
    args = [str(data), "--user-dir", str(USER_DIR), *recipes.fairseq_train_args(name), "--save-dir", "/nowhere"]
    if name == "cls_finetune":
        args += ["--num-classes", "2", "--total-num-update", "2000"]  # finetune_cls.sh derives it from --max-update
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), args))


@pytest.mark.parametrize("name", RECIPES)
def test_fairseq_parses_the_flags_back_into_every_value_of_the_recipe(name, tmp_path):
    config = parsed_config(name, tmp_path)
    recipe = recipes.load(name)
    checked = 0
    for group, fields in recipe.items():
        for field, value in fields.items():
            if value == recipes.UNSET:
                continue
            got = getattr(config[group], field)  # the model group stays an argparse Namespace
            if isinstance(got, (int, float)) and not isinstance(got, bool):
                value = float(value)  # YAML 1.1 reads 1e-6 as a string; fairseq's float field parses it
            assert (list(got) if isinstance(value, list) else got) == value, f"{group}.{field}"
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("name", RECIPES + ["sweep_mt", "sweep_mlm"])
def test_fairseq_hydra_train_composes_every_value_the_pipelines_read(name):
    """What fairseq-hydra-train composes from the file (fairseq's schema stored under the config's name, as
    hydra_train.py does) holds every value of recipes.load: hydra lays the schema's defaults over whatever
    the defaults list puts before the file's own values, so a base listed first would be lost silently."""
    from fairseq.dataclass.initialize import hydra_init
    from hydra import compose, initialize_config_dir

    hydra_init(name)
    with initialize_config_dir(config_dir=str(recipes.CONFIG_DIR), version_base="1.1"):
        composed = compose(config_name=name)
    checked = 0
    for group, fields in recipes.load(name).items():
        for field, value in fields.items():
            if value != recipes.UNSET:
                got = composed[group][field]
                if isinstance(got, float):
                    value = float(value)  # YAML 1.1 reads 1e-6 as a string; OmegaConf as a float
                assert got == value, f"{group}.{field}"
                checked += 1
    assert checked >= 15


def test_defaults_lists_merge_like_hydra():
    electra, mlm = recipes.load("electra_pretrain"), recipes.load("mlm_pretrain")
    assert electra["criterion"]["_name"] == "electra" and mlm["criterion"]["_name"] == "masked_lm"
    assert electra["optimizer"] == mlm["optimizer"] and electra["task"]["mask_prob"] == 0.15
    assert electra["checkpoint"]["save_interval_updates"] == 500  # run_defaults, through mlm_pretrain


def test_the_pipelines_train_with_the_recipe_and_their_flags_override_it(tmp_path):
    """train_mt.sh's fairseq-train command: the recipe's flags first, then the script's (argparse keeps the last)."""
    shim = tmp_path / "bin"
    shim.mkdir()  # a fairseq-train that records its arguments (and knows every --arch)
    (shim / "fairseq-train").write_text(f"#!/usr/bin/env bash\n[[ $* == *--help* ]] || printf '%s\\n' \"$@\" > {tmp_path}/args\n")
    (shim / "fairseq-train").chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.en-fr.en.bin").touch()
    env = {**os.environ, "PATH": f"{shim}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run(["bash", ROOT / "scripts/train_mt.sh", data, tmp_path / "run", "--arch", "transformer_l2_h128",
         "--max-update", "3", "--lr", "0.001"], env=env)
    args = (tmp_path / "args").read_text().split("\n")
    recipe = recipes.fairseq_train_args("mt_en_fr")
    assert args[3:3 + len(recipe)] == recipe  # DATA --user-dir DIR, then the recipe
    last = {flag: args[i + 1] for i, flag in enumerate(args[:-1]) if flag.startswith("--")}
    assert last["--lr"] == "0.001" and last["--warmup-updates"] == "100" and last["--max-tokens"] == "1024"


def test_an_unknown_recipe_is_one_line_naming_the_known_ones():
    one_line_error(run(["python", USER_DIR / "recipes.py", "args", "mt_de_en"], check=False),
                   "mt_de_en", "mt_en_fr", "cls_finetune")
