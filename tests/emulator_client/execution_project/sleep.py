"""Runs until it is canceled (at most ten minutes)."""
import time

print("sleeping", flush=True)
for _ in range(600):
    time.sleep(1)
