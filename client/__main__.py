"""``python -m client``: the same as ``nova-voice dictate``."""

from __future__ import annotations

import sys

from client.dictate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
