"""What a trained model must know of the data it was trained on, as plain JSON values.

A fine-tuning checkpoint carries this card (``brainlit_data``), and a model folder copies it
into ``brainlit_model.json``, so that a new cohort can be parcellated the same way (atlas,
TR, cleaning) and checked against it before anything is predicted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def atlas_card(atlas: str) -> dict[str, Any]:
    """Atlas name, checksum and ROI labels (labels NIfTI: the label values, in masker order).

    A bundled coordinate atlas (``power264``) is known by name; it has no file to check.
    """
    path = Path(atlas)
    if not path.is_file():
        return {"name": atlas, "sha256": None, "roi_labels": None}
    labels = None
    if path.name.endswith((".nii", ".nii.gz")):
        image = nib.load(path)
        if len(image.shape) == 3:
            data = np.asarray(image.dataobj)
            labels = [int(v) if float(v).is_integer() else float(v) for v in np.unique(data[data != 0])]
    return {"name": path.name, "sha256": file_sha256(path), "roi_labels": labels}


def data_card(datamodule: Any) -> dict[str, Any]:
    """The card of an :class:`~brainlit.data.datamodule.FMRIDataModule` after ``setup``.

    Returns:
        ``atlas`` (name, sha256, roi_labels), ``n_rois``, ``t_r``, ``crop_len``, ``window``
        (the time points each training window held: ``crop_len`` or the shortest run),
        ``preprocessing`` (the parcellator's options but the atlas path), ``targets`` and the
        ``training_cohort``: the subjects the model was fit on (the fold's training and
        validation subjects) and their age range (where known).
    """
    params = dict(datamodule.parcellator.params)
    ids = datamodule.fold_subject_ids("train") + datamodule.fold_subject_ids("val")
    phenotypes = datamodule.reader.phenotypes.reindex(ids)
    ages = phenotypes["age"].dropna() if "age" in phenotypes else phenotypes.index[:0]
    return {
        "atlas": atlas_card(params.pop("atlas")),
        "n_rois": int(datamodule.n_rois),
        "t_r": datamodule.repetition_time,
        "crop_len": int(datamodule.crop_len),
        "window": min(int(datamodule.crop_len), int(datamodule.n_timepoints)),
        "preprocessing": params,
        "targets": list(datamodule.targets),
        "training_cohort": {
            "n_subjects": len(ids),
            "age_min": float(ages.min()) if len(ages) else None,
            "age_max": float(ages.max()) if len(ages) else None,
        },
    }
