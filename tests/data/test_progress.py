"""Cache progress: a bar on a terminal, a few plain lines in CI and SLURM logs."""

import io
import logging

from brainlit.data.cache import build_cache
from brainlit.data.parallel import Progress
from brainlit.data.parcellate import Parcellator
from brainlit.data.sources import discover_subjects, load_phenotypes


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def build(root, cache):
    parcellator = Parcellator(str(root / "atlas.nii.gz"), min_timepoints=50)
    return build_cache(discover_subjects(root), parcellator, cache, load_phenotypes(root))


def test_a_log_file_gets_plain_lines_and_no_carriage_returns(bids, tmp_path, monkeypatch, caplog):
    stderr = io.StringIO()  # not a terminal, like a CI or SLURM log
    monkeypatch.setattr("sys.stderr", stderr)
    with caplog.at_level(logging.INFO, logger="brainlit.data.parallel"):
        build(bids, tmp_path / "c.h5")
    lines = [r.getMessage() for r in caplog.records if r.name == "brainlit.data.parallel"]
    assert lines[0].startswith("Parcellating: 1/5 subjects")
    assert lines[-1].startswith("Parcellating: 5/5 subjects") and "built 5" in lines[-1]
    assert "\r" not in stderr.getvalue()


def test_a_terminal_gets_the_bar_and_no_log_lines(bids, tmp_path, monkeypatch, caplog):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with caplog.at_level(logging.INFO, logger="brainlit.data.parallel"):
        build(bids, tmp_path / "c.h5")
    assert "\r" in terminal.getvalue() and "Parcellating: 100%" in terminal.getvalue()
    assert "5/5" in terminal.getvalue()
    assert not [r for r in caplog.records if r.name == "brainlit.data.parallel"]


def test_a_long_run_logs_every_tenth_and_not_every_item(monkeypatch, caplog):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with (
        caplog.at_level(logging.INFO, logger="brainlit.data.parallel"),
        Progress(1000, "Parcellating") as progress,
    ):
        for _ in range(1000):
            progress.update(built=1)
    counts = [r.getMessage().split()[1] for r in caplog.records]
    assert counts == [f"{n}/1000" for n in range(100, 1001, 100)]


def test_a_slow_run_logs_once_a_minute_between_tenths(monkeypatch, caplog):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    clock = iter(range(0, 10**6, 61))  # every item takes 61 s
    monkeypatch.setattr("brainlit.data.parallel.time.monotonic", lambda: next(clock))
    with (
        caplog.at_level(logging.INFO, logger="brainlit.data.parallel"),
        Progress(1000, "Parcellating") as progress,
    ):
        for _ in range(5):
            progress.update()
    assert [r.getMessage() for r in caplog.records] == [
        f"Parcellating: {n}/1000 subjects ({61 * n} s)" for n in range(1, 6)
    ]
