"""Summarise a ``py-spy record --format raw`` file (collapsed stacks, ``frame;frame;... count``):
the functions with the most samples on top of the stack (self) and anywhere in it (total).

    python benchmarks/profile_summary.py gateway-profile-sqlite.txt [--top 25]
"""
from __future__ import annotations

import argparse
import collections
import re


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in open(args.path):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [re.sub(r" \(.*?/(site-packages|lib/python3\.\d+|byok_nb)/", r" (\1/", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    print(f"{samples} samples")
    print("\nself (top of stack):")
    for frame, n in own.most_common(args.top):
        print(f"  {100 * n / samples:5.1f}%  {frame}")
    print("\ntotal (anywhere in the stack):")
    for frame, n in total.most_common(args.top):
        print(f"  {100 * n / samples:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
