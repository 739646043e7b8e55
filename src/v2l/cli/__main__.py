"""`python -m v2l.cli VERB ...` (same as the `v2l` script)."""

from . import main

if __name__ == "__main__":
    main()
