"""`python -m jobdl ARGS...` runs the bundled jobdl binary with ARGS and exits with its code."""

import subprocess
import sys

from jobdl import find_binary


def main() -> int:
    try:
        return subprocess.call([find_binary(), *sys.argv[1:]])
    except KeyboardInterrupt:  # jobdl received the same Ctrl+C and has stopped
        return 130


if __name__ == "__main__":
    sys.exit(main())
