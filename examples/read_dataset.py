"""Every rank reads a dataset at NEO_DATA_<NAME> (``neo run --data NAME examples/read_dataset.py NAME``)."""

import os
import sys

name = sys.argv[1] if len(sys.argv) > 1 else "clinical-eu"
root = os.environ["NEO_DATA_" + name.upper().replace("-", "_")]
files = sorted(os.listdir(root))
with open(os.path.join(root, files[0])) as f:
    first = f.readline().strip()
print(f"rank {os.environ.get('RANK', '?')}: {root} -> {len(files)} file(s), first line: {first!r}")
