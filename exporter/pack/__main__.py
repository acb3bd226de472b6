"""python -m exporter.pack [ROOT]: regenerate the committed pack files."""

import sys
from pathlib import Path

from .generate import generated_files, write_all

root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
write_all(root)
print(f"wrote {len(generated_files())} files under {root}")
