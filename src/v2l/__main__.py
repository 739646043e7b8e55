"""`python -m v2l VERB ...` and `accelerate launch -m v2l train ...` (same as the `v2l` script)."""

from .cli import main

if __name__ == "__main__":
    main()
