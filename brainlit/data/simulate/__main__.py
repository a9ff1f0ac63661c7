"""``python -m brainlit.data.simulate``: see :mod:`brainlit.data.simulate.cli`."""

from brainlit.data.simulate.cli import main

main()
