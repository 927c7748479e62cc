"""``jaxticket grokking`` before the command is registered: the same flags, run and table.

python experiments/grokking/run.py --p 31 --dim 32 --hidden 64 ... --out DIR
"""

import argparse
import sys

from jaxticket.grokking.command import add_arguments, run_command

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(run_command(parser.parse_args()))
