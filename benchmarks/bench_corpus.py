"""Pretraining at corpus scale: what one CPU core does here, and a projection to 40,000 subjects.

Measured on this machine (never part of the tests):

1. reading training windows from an HDF5 cache of ``--subjects`` runs of ``--rois`` regions
   (what each DataLoader worker does), windows per second;
2. one LMAE optimiser step of the Cam-CAN pretraining architecture at ``--rois`` regions
   (``configs/camcan/pretrain.yaml``: d_model 128, depth 4, factorised attention), samples per
   second per core, and its floating-point operations per sample (PyTorch's FlopCounterMode);
3. from those, a **projection** (not a measurement) for UK Biobank: ``--corpus`` subjects,
   ``--epochs`` passes of ``--crops`` windows each, on GPUs reaching ``--mfu`` of their bf16 peak.

    python benchmarks/bench_corpus.py [--subjects 2000 --rois 400 --corpus 40000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from brainlit.data.cache import CacheReader
from brainlit.data.datamodule import SubjectDataset
from brainlit.models.encoder import PatchEncoder
from brainlit.models.lmae import LocalMaskedAutoencoder

PEAK_BF16 = {"H100 SXM": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s, vendor figures


def write_cache(path: Path, n_subjects: int, n_rois: int, n_volumes: int) -> None:
    """A cache laid out as brainlit writes it (``/subjects/<id>/timeseries [R, T]``), random data."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as h5:
        h5.create_group("meta")
        for i in range(n_subjects):
            group = h5.create_group(f"subjects/sub-{i:05d}")
            group.create_dataset("timeseries", data=rng.standard_normal((n_rois, n_volumes), dtype=np.float32))
            group.attrs["complete"] = True


def window_rate(path: Path, crop: int, seconds: float = 5.0) -> float:
    """Random training windows read per second by one process."""
    reader = CacheReader(path)
    ids = reader.subject_ids
    dataset = SubjectDataset(reader, ids, np.zeros((len(ids), 0), np.float32), n_timepoints=crop, crop_len=crop)
    order, done, start = np.random.default_rng(0).permutation(len(ids)), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        dataset[int(order[done % len(ids)])]
        done += 1
    return done / (time.perf_counter() - start)


def lmae_step(n_rois: int, crop: int, batch: int) -> tuple[float, float]:
    """Samples per second of one LMAE optimiser step on this machine, and FLOPs per sample."""
    encoder = PatchEncoder(n_rois, patch_len=8, d_model=128, depth=4, n_heads=4, dropout=0.1, attention="factorized")
    model = LocalMaskedAutoencoder(encoder, decoder_dim=64, decoder_depth=0, mask_ratio=0.5, mask_strategy="local",
                                   block_len=2, block_rois=1)
    optimiser = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, n_rois, crop)

    def step() -> None:
        optimiser.zero_grad()
        model(x)["loss"].backward()
        optimiser.step()

    step()
    with FlopCounterMode(display=False) as counter:
        step()
    start = time.perf_counter()
    step()
    return batch / (time.perf_counter() - start), counter.get_total_flops() / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--rois", type=int, default=400)
    parser.add_argument("--volumes", type=int, default=490, help="UK Biobank: 490 volumes at TR 0.735 s")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--corpus", type=int, default=40000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--crops", type=int, default=4, help="windows per subject and epoch")
    parser.add_argument("--mfu", type=float, default=0.3, help="assumed share of the GPU's bf16 peak")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder) / "corpus.h5"
        start = time.perf_counter()
        write_cache(cache, args.subjects, args.rois, args.volumes)
        written = args.subjects / (time.perf_counter() - start)
        windows = window_rate(cache, args.crop)
    samples, flops = lmae_step(args.rois, args.crop, args.batch)
    total = args.corpus * args.epochs * args.crops
    print(f"measured on {threads} CPU thread(s):")
    print(f"  cache writes: {written:.0f} subjects/s ({args.rois} ROIs x {args.volumes} volumes, arrays already extracted)")
    print(f"  training windows read: {windows:.0f} windows/s per process ({args.crop} volumes)")
    print(f"  LMAE step: {samples / threads:.2f} samples/s per core, {flops / 1e9:.1f} GFLOP per sample")
    print(f"projection (not measured): {args.corpus} subjects x {args.epochs} epochs x {args.crops} windows = "
          f"{total:.2e} samples = {total * flops:.2e} FLOP")
    print(f"  CPU: {total / (samples / threads) / 3600:.0f} core-hours")
    for gpu, peak in PEAK_BF16.items():
        hours = total * flops / (peak * args.mfu) / 3600
        print(f"  {gpu} at {args.mfu:.0%} of its bf16 peak: {hours:.1f} GPU-hours; loader needs "
              f"{total / (hours * 3600):.0f} windows/s ({total / (hours * 3600) / windows:.1f} reader processes)")


if __name__ == "__main__":
    main()
