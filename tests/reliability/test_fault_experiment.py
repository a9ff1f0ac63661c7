"""``python -m brainlit experiment`` killed, rerun, run twice, or pointed at a read-only folder.

Each run is a QUICK experiment (age only, two folds) on the 16-subject Cam-CAN-shaped tree, as
a subprocess: about 25 s, so these are slow tests.
"""

import errno
import re
import shutil
from pathlib import Path

import pytest

from brainlit.errors import BrainlitOutputError
from brainlit.experiment.context import write_atomically
from tests.conftest import REPO
from tests.reliability.conftest import brainlit, kill_when, make_read_only, read_only_prefix

# where to kill: a file whose appearance marks the step, and how long after it
KILL_POINTS = {
    "cache": ("cache.h5", 0.3),
    "classical": ("finetune_age/repeat0/classical.csv", 0.0),
    "pretraining": ("pretrain/local/logs/checkpoints/*.ckpt", 0.0),  # between two epochs
    "network": ("finetune_age/repeat0/fold1/local/cross_fit0/member0/logs/events.out.tfevents*", 0.3),
    "combination": ("finetune_age/repeat0/fold1/local/cross_fit1/member0/predictions.csv", 0.0),  # the last network
}
FINISHED = ("pretrain/local/lmae.ckpt", "*/repeat0/fold*/splits.csv", "*/repeat0/fold*/cross_fit*.csv",
            "*/repeat0/fold*/local/cross_fit*/member0/predictions.csv", "*/repeat0/classical.csv")


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``configs/camcan`` with its age config only, and the QUICK overlay beside it."""
    root = tmp_path_factory.mktemp("configs")
    (root / "camcan").mkdir()
    for name in ("pretrain.yaml", "finetune_age.yaml"):
        shutil.copy(REPO / "configs" / "camcan" / name, root / "camcan")
    shutil.copytree(REPO / "configs" / "quick", root / "quick")
    return root / "camcan"


def experiment(root: Path, configs: Path, out: Path) -> list[str]:
    return ["experiment", "--root", str(root), "--atlas", str(root / "atlas.nii.gz"), "--configs", str(configs),
            "--out", str(out), "--quick", "true", "--n_folds", "2"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_camcan, configs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    done = brainlit(*experiment(tiny_camcan, configs, out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_a_write_that_fails_names_the_file_and_leaves_the_old_one_whole(tmp_path, monkeypatch):
    results = tmp_path / "results.csv"
    results.write_text("model,mae\nmean,7.0\n")

    def disk_full(path: Path, text: str) -> None:
        with open(path, "w") as file:
            file.write(text[:5])  # part of it reached the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(BrainlitOutputError, match=f"cannot write {results} \\(No space left on device\\)"):
        write_atomically(results, "model,mae\nbrainlit,5.0\n")
    monkeypatch.undo()
    assert results.read_text() == "model,mae\nmean,7.0\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_experiment_rerun_gives_the_same_results_and_reuses_finished_steps(
    point, tiny_camcan, configs, uninterrupted, tmp_path
):
    out = tmp_path / "out"
    args = experiment(tiny_camcan, configs, out)
    kill_when(args, out, *KILL_POINTS[point])
    finished = {p: p.stat().st_mtime_ns for pattern in FINISHED for p in out.glob(pattern)}
    assert bool(finished) == (point != "cache")
    rerun = brainlit(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for table in ("results.csv", "predictions.csv"):
        assert (out / table).read_bytes() == (uninterrupted / table).read_bytes(), table
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # not redone
    if point != "cache":  # the cache is opened again (or not at all), never rebuilt
        assert set(re.findall(r"subjects \((\d+) built", rerun.stderr)) <= {"0"}
    # nothing partial left: no temporary or corrupt file, each step's logs from one run only
    assert not [p for p in out.rglob("*") if p.suffix == ".tmp" or ".corrupt-" in p.name]
    for logs in out.rglob("logs"):
        writers = {p.name.split(".")[-2] for p in logs.glob("events.out.tfevents*")}  # the pid
        assert len(writers) == 1, sorted(p.name for p in logs.iterdir())
        assert not list(logs.rglob("*-v[0-9]*.ckpt")), sorted(p.name for p in logs.rglob("*.ckpt"))


@pytest.mark.slow
def test_the_same_quick_experiment_twice_gives_identical_results(tiny_camcan, configs, uninterrupted, tmp_path):
    again = brainlit(*experiment(tiny_camcan, configs, tmp_path / "again"))
    assert again.returncode == 0, again.stderr[-3000:]
    for table in ("results.csv", "predictions.csv"):
        assert (tmp_path / "again" / table).read_bytes() == (uninterrupted / table).read_bytes(), table


@pytest.mark.slow
def test_rerun_into_a_read_only_folder_names_the_file_and_keeps_the_cache(
    tiny_camcan, configs, uninterrupted, tmp_path
):
    prefix = read_only_prefix()
    out = tmp_path / "archived"
    shutil.copytree(uninterrupted, out)
    (out / "predictions.csv").unlink()  # something is left to write
    cache = (out / "cache.h5").read_bytes()
    make_read_only(out)
    try:
        rerun = brainlit(*experiment(tiny_camcan, configs, out), prefix=prefix)
    finally:
        out.chmod(0o755)
    assert rerun.returncode == 2
    assert rerun.stderr.splitlines()[-1].startswith(f"error: cannot write {out / 'predictions.csv'} (Permission denied)")
    assert (out / "cache.h5").read_bytes() == cache
