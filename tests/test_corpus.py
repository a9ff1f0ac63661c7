"""Pretraining on a corpus apart from the labelled cohort: the README's
`experiment --pretrain_root CORPUS`, its checks against the cohort and what the model card says."""

import json

import numpy as np
import pandas as pd
import pytest

from brainlit import load_model
from brainlit.data.simulate import simulate_cohort
from brainlit.errors import BrainlitConfigError
from brainlit.experiment import experiment_main
from tests.conftest import REPO

ARRAYS = ["--data.layout", "arrays"]


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """A labelled cohort and an unlabelled corpus of the same simulator (8 ROIs, TR 2 s)."""
    root = tmp_path_factory.mktemp("corpus")
    simulate_cohort(root / "cohort", n_subjects=16, n_rois=8, n_volumes=120, seed=0, layout="arrays")
    simulate_cohort(root / "corpus", n_subjects=12, n_rois=8, n_volumes=120, seed=9, layout="arrays")
    table = pd.read_csv(root / "corpus" / "participants.tsv", sep="\t")
    table[["participant_id"]].to_csv(root / "corpus" / "participants.tsv", sep="\t", index=False)  # no labels
    return root


def experiment(cohorts, out, *extra):
    return ["--root", str(cohorts / "cohort"), "--configs", str(REPO / "configs" / "demo"), "--out", str(out),
            "--quick", "true", "--n_folds", "2", "--repeats", "1", *ARRAYS, *extra]


def test_pretraining_on_a_corpus_is_recorded_in_the_model_card(cohorts, tmp_path):
    out = tmp_path / "run"
    experiment_main(experiment(cohorts, out, "--pretrain_root", str(cohorts / "corpus"),
                               "--pretrain_data.layout", "arrays"))
    corpus = json.loads((out / "pretrain" / "local" / "corpus.json").read_text())
    assert corpus["n_subjects"] == 12 and corpus["layout"] == "arrays" and not corpus["labels_read"]
    assert len(corpus["cache_sha256"]) == 64 and (out / "corpus.h5").is_file()
    card = load_model(out / "model").card
    assert card["pretraining"]["cache_sha256"] == corpus["cache_sha256"]
    assert np.isfinite(pd.read_csv(out / "results.csv")["mae"]).all()


def test_a_corpus_of_another_roi_count_is_refused_naming_both(cohorts, tmp_path):
    simulate_cohort(tmp_path / "wide", n_subjects=6, n_rois=12, n_volumes=120, seed=2, layout="arrays")
    with pytest.raises(BrainlitConfigError, match=r"ROIs 12, the cohort .* 8"):
        experiment_main(experiment(cohorts, tmp_path / "run", "--pretrain_root", str(tmp_path / "wide"),
                                   "--pretrain_data.layout", "arrays"))


def test_a_corpus_at_another_tr_is_refused_naming_both(cohorts, tmp_path):
    simulate_cohort(tmp_path / "fast", n_subjects=6, n_rois=8, n_volumes=120, seed=2, layout="arrays")
    for sidecar in (tmp_path / "fast").glob("sub-*.json"):
        sidecar.write_text(json.dumps({"RepetitionTime": 0.72}))
    with pytest.raises(BrainlitConfigError, match=r"TR 0.72, the cohort .* 2.0"):
        experiment_main(experiment(cohorts, tmp_path / "run", "--pretrain_root", str(tmp_path / "fast"),
                                   "--pretrain_data.layout", "arrays"))
