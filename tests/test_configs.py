"""Every shipped YAML: it parses against the class signatures, and ablations compare like with like."""

from pathlib import Path

import pytest
import yaml

from brainlit.__main__ import main
from brainlit.experiment.context import STACK_FILE, StackConfig
from tests.conftest import REPO

OVERLAYS = REPO / "configs" / "quick"  # QUICK=1 overlays, not standalone configs
EXPERIMENTS = [
    d for d in sorted((REPO / "configs").iterdir()) if (d / "pretrain.yaml").exists() and d != OVERLAYS
]
FIT_CONFIGS = sorted(p for d in EXPERIMENTS for p in d.glob("*.yaml") if p.name != STACK_FILE)


def _encoder(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["model"]["init_args"].get("encoder", {})


@pytest.mark.parametrize("config", FIT_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_config_parses_against_the_signatures(config, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--data.root", str(tmp_path), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path: brainlit.tasks." in capsys.readouterr().out


@pytest.mark.parametrize("folder", EXPERIMENTS, ids=lambda p: p.name)
def test_finetuning_configs_state_the_pretraining_encoder(folder):
    """Fine-tuning without pretraining (the ablation) must use the pretrained architecture."""
    pretrain = _encoder(folder / "pretrain.yaml")
    for config in folder.glob("finetune*.yaml"):
        assert _encoder(config) == pretrain, config.name
    assert _encoder(OVERLAYS / "finetune.yaml") == _encoder(OVERLAYS / "pretrain.yaml")


@pytest.mark.parametrize("folder", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_folder_says_what_brainlit_combines(folder):
    stack = StackConfig.load(folder)
    assert (folder / STACK_FILE).is_file() and stack.cross_fit >= 2
    targets = {t for config in folder.glob("finetune*.yaml") for t in yaml.safe_load(config.read_text())["data"]["targets"]}
    assert set(stack.combination.readout_only) <= targets
    assert stack.readout.anchor is None or stack.readout.anchor in targets


@pytest.mark.parametrize("config", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_comments_say_what_a_key_does_in_one_short_line(config):
    long = [line for line in config.read_text().splitlines() if "#" in line and len(line.split("#", 1)[1]) > 90]
    assert not long, long
