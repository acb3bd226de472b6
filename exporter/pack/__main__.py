"""python -m sparkwatch.pack [--root DIR]: regenerate the committed pack files
(alerts/, dashboards/, runbooks, promtool tests) from the definitions."""

import argparse
import sys
from pathlib import Path

from .generate import generated_files, write_all

parser = argparse.ArgumentParser(prog="python -m sparkwatch.pack", description=__doc__.splitlines()[0])
parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2],
                    help="repository root to write under (default: this checkout)")
args = parser.parse_args()
write_all(args.root)
print(f"wrote {len(generated_files())} files under {args.root}")
sys.exit(0)
