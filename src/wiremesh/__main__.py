"""``python -m wiremesh``: the same CLI as the ``wiremesh`` command."""

from wiremesh.cli import main

if __name__ == "__main__":
    main()
