"""`python -m tests.multihost`: see the package's docstring."""

import argparse
import sys

import tests.multihost
from tests.multihost.machine import unavailable


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.multihost",
                                     description=tests.multihost.__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=300, help="pictures to send (default 300)")
    parser.add_argument("--known", type=int, default=12, help="of which copies of known pictures (default 12)")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--timeout", type=int, default=240, help="seconds each phase may take (default 240)")
    parser.add_argument("--keep", action="store_true", help="keep the folder of logs and data afterwards")
    args = parser.parse_args(argv)
    why = unavailable()
    if why:
        print(f"several hosts: skipped: {why}", flush=True)
        return 0
    from tests.multihost.run import run_and_report  # noqa: PLC0415 - the console's packages, only now needed

    return run_and_report(args)


if __name__ == "__main__":
    sys.exit(main())
