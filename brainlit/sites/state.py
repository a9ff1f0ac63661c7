"""What the site estimators share: a saved state of JSON values and numpy arrays, checked on load.

Each estimator's ``to_state()`` returns ``(json_values, arrays)``: ``json_values`` holds only
``json.dumps``-able values and names the estimator (``kind``) and its state version;
``arrays`` maps names to numpy arrays that go into a safetensors file as they are. A model
folder that holds several estimators prefixes the array names (``conformal.scores``, ...);
``from_state`` wants them back without the prefix.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from brainlit.errors import BrainlitCheckpointError

State = tuple[dict, dict[str, np.ndarray]]
STATE_VERSION = 1


def header(kind: str) -> dict:
    """The JSON values every state starts with: the estimator's name and the state version."""
    return {"kind": kind, "version": STATE_VERSION}


def check_state(json_values: Mapping, arrays: Mapping[str, np.ndarray], kind: str,
                names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``names`` of a state written by ``kind``'s ``to_state``, as float64 numpy.

    Raises:
        BrainlitCheckpointError: the state is another estimator's, of a newer version, or
            lacks an array.
    """
    if json_values.get("kind") != kind or json_values.get("version", 0) > STATE_VERSION:
        raise BrainlitCheckpointError(
            f"the stored state is {json_values.get('kind')!r} version {json_values.get('version')}, "
            f"not a state of {kind} this brainlit reads (version <= {STATE_VERSION}).")
    missing = [name for name in names if name not in arrays]
    if missing:
        raise BrainlitCheckpointError(f"the stored {kind} state lacks the arrays {missing}: "
                                      "the model folder is incomplete; export it again.")
    return {name: np.asarray(arrays[name], dtype=np.float64) for name in names}
