"""``jaxticket transfer`` before the command is registered: the same flags, run and table.

python experiments/transfer/run.py --dataset digits --model mlp ... --out DIR
"""

import argparse
import sys

from jaxticket.transfer.command import add_arguments, run_command

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(run_command(parser.parse_args()))
