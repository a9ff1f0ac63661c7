"""``python -m brainlit`` entry point."""

from brainlit.cli import main

if __name__ == "__main__":
    main()
