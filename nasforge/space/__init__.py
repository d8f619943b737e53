"""The ``arch`` protocol, its modes, schemas and encoders."""
from nasforge.space.arch import ArchBase, FillArch, FixedArch, RecordingArch
from nasforge.space.domains import (
    CategoricalDomain,
    ChoiceDomain,
    FloatDomain,
    InputsDomain,
    IntDomain,
)
from nasforge.space.encoding import Encoder
from nasforge.space.protocol import Arch
from nasforge.space.supernet import MixedInputs, MixedOp, SupernetArch, concat_inputs, sum_inputs
from nasforge.space.schema import Condition, Decision, Schema
from nasforge.space.space import Space

__all__ = [
    "ArchBase", "FixedArch", "RecordingArch", "FillArch", "Space", "Schema", "Decision", "Condition",
    "Encoder", "IntDomain", "FloatDomain", "CategoricalDomain", "ChoiceDomain", "InputsDomain",
    "Arch", "SupernetArch", "MixedOp", "MixedInputs", "sum_inputs", "concat_inputs",
]
