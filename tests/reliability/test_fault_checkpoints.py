"""Checkpoints given as ``model.pretrained``: corrupt, of the wrong kind, or carrying code."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from brainlit.__main__ import main
from brainlit.errors import BrainlitCheckpointError
from brainlit.tasks import EncoderSpec, LMAEPretrainer, RegressionTask
from brainlit.tasks.checkpoints import export_encoder, load_encoder
from tests.conftest import REPO
from tests.reliability.conftest import data_args

ENCODER = EncoderSpec(d_model=24, depth=1, n_heads=2)


class CreatesAFile:
    """Unpickling this calls ``open(marker, "w")``: a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return open, (str(self.marker), "w")


def lightning_checkpoint(path: Path, task: torch.nn.Module, class_path: str) -> Path:
    """Saved as Lightning does from LightningCLI: state_dict + hyper_parameters with _class_path."""
    hparams = {**dict(task.hparams), "_class_path": class_path}
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams, "epoch": 3}, path)
    return path


@pytest.fixture
def lmae_ckpt(tmp_path: Path) -> tuple[Path, LMAEPretrainer]:
    task = LMAEPretrainer(n_rois=6, encoder=ENCODER)
    return lightning_checkpoint(tmp_path / "lmae.ckpt", task, "brainlit.tasks.LMAEPretrainer"), task


def regressor(pretrained: Path) -> RegressionTask:
    return RegressionTask(n_rois=6, target_names=["age"], crop_len=32, pretrained=str(pretrained))


def test_exported_encoder_loads_like_its_checkpoint_without_pickle(lmae_ckpt, tmp_path):
    ckpt, pretrainer = lmae_ckpt
    out = export_encoder(ckpt, tmp_path / "shared" / "encoder.safetensors")
    assert not list(out.parent.glob("*.tmp"))
    assert out.read_bytes()[8:9] == b"{"  # a JSON header, then raw tensors: nothing to unpickle
    spec, weights = load_encoder(out)
    assert spec == ENCODER
    from_safetensors, from_ckpt = regressor(out), regressor(ckpt)
    assert from_safetensors.hparams.encoder["d_model"] == 24
    expected = pretrainer.model.encoder.state_dict()
    for model in (from_safetensors, from_ckpt):
        state = model.model.encoder.state_dict()
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], v) for k, v in expected.items())


def test_export_encoder_command(lmae_ckpt, tmp_path, capsys):
    ckpt, _ = lmae_ckpt
    main(["export", str(ckpt), str(tmp_path / "enc.safetensors")])
    assert f"Encoder written to {tmp_path / 'enc.safetensors'}" in capsys.readouterr().out
    assert load_encoder(tmp_path / "enc.safetensors")[0] == ENCODER


def test_checkpoint_that_would_run_code_is_refused_and_nothing_runs(lmae_ckpt, tmp_path):
    ckpt, pretrainer = lmae_ckpt
    marker = tmp_path / "code_ran"
    evil = tmp_path / "shared.ckpt"
    hparams = {**dict(pretrainer.hparams), "_class_path": "brainlit.tasks.LMAEPretrainer",
               "note": CreatesAFile(marker)}
    torch.save({"state_dict": pretrainer.state_dict(), "hyper_parameters": hparams}, evil)
    with pytest.raises(BrainlitCheckpointError, match=f"refused to load {evil}: .*could run code"):
        regressor(evil)
    with pytest.raises(BrainlitCheckpointError, match="refused"):
        export_encoder(evil, tmp_path / "enc.safetensors")
    assert not marker.exists()
    assert not (tmp_path / "enc.safetensors").exists()
    # the payload is real: an unrestricted load would have run it
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_fine_tuning_checkpoint_is_the_wrong_kind(lmae_ckpt, tmp_path):
    task = regressor(lmae_ckpt[0])
    ckpt = lightning_checkpoint(tmp_path / "age.ckpt", task, "brainlit.tasks.RegressionTask")
    with pytest.raises(BrainlitCheckpointError, match=f"{ckpt} is a RegressionTask checkpoint, not an LMAEPretrainer"):
        regressor(ckpt)


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "empty", "text"])
def test_corrupt_checkpoint_error_names_the_file(lmae_ckpt, tmp_path, damage):
    ckpt, _ = lmae_ckpt
    whole = ckpt.read_bytes()
    content = {"random bytes": bytes(range(256)) * 40, "truncated": whole[: len(whole) // 2],
               "empty": b"", "text": b"not a checkpoint\n"}[damage]
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(content)
    with pytest.raises(BrainlitCheckpointError, match=f"cannot read {bad} as a checkpoint"):
        regressor(bad)


def test_safetensors_that_is_not_an_encoder_export(tmp_path):
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(BrainlitCheckpointError, match=f"{other} is a safetensors file but not a brainlit encoder"):
        regressor(other)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(BrainlitCheckpointError, match="junk.safetensors as a checkpoint"):
        regressor(tmp_path / "junk.safetensors")


def test_cli_prints_the_checkpoint_error_without_a_traceback(cohort, tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / "configs/camcan/finetune_age.yaml"), "--data.t_r", "null",
              *data_args(cohort, tmp_path / "c.h5"), "--model.init_args.pretrained", str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"error: cannot read {bad} as a checkpoint (Unsupported operand")
    assert "Traceback" not in err
