#!/usr/bin/env bash
# Structured tickets (issue 13): PreCropping and structured (channel) tickets against
# unstructured ones at equal kernel counts, the Rethinking comparison, and layer tickets on
# ResNet-20. Each line writes a JSON of per-seed accuracies next to this script and prints
# the table rows (mean ± std [min, max] over 3 seeds) copied into results.md.
set -euo pipefail
cd "$(dirname "$0")"
nice -n 10 python tickets.py --model cnn1d --dataset mnist1d                    # 1500 steps
nice -n 10 python layer_tickets.py --width 8 --steps 300                        # ResNet-20, digits
# the random-block control on its own: in the recorded run the line above still drew the
# random blocks anew for every block (a bug since fixed), so that control was rerun
nice -n 10 python layer_tickets.py --width 8 --steps 300 --random-only --out layer_tickets_random.json
# Not run on the shared 2-core machine this session (time): Conv-2 on digits.
# nice -n 10 python tickets.py --model conv2 --dataset digits --steps 800 --batch 64
