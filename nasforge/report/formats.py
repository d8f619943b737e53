"""The export formats and the file each writes beside ``arch.json``. Kept apart from the export
code so the CLI lists the formats without importing torch."""
from __future__ import annotations

EXPORT_FILES: dict[str, str] = {"state_dict": "model.pt", "torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
FORMATS: tuple[str, ...] = tuple(EXPORT_FILES)
