"""A HyperDrive trial on the emulator's own interpreter (user-managed environment, nothing to
build), logging through simml's job-side ``Run``; ``--sleep`` keeps it running (the cancel case).
Submitted by hyperdrive_grid.py and by tests/test_emulator_hyperdrive.py through simml's API."""
import argparse
import time

from simml.core.run import Run

parser = argparse.ArgumentParser()
parser.add_argument("--kernel", type=str, default="linear")
parser.add_argument("--penalty", type=float, default=1.0)
parser.add_argument("--sleep", type=float, default=0.0)
args = parser.parse_args()

run = Run.get_context()
run.log("Accuracy", round(0.95 - abs(args.penalty - 1.0) / 10
                          - (0.02 if args.kernel == "rbf" else 0.0), 6))
run.flush()
deadline = time.monotonic() + args.sleep
while time.monotonic() < deadline:
    time.sleep(0.2)
