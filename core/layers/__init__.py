"""Editor-level node kinds (the layer table) and the document -> core graph builder."""
from .base import LAYERS, AttrSpec, BuildContext, LayerKind, Port, PORT_TYPES, register  # noqa
from . import (data_layers, dense_layers, conv_layers, activation_layers, op_layers,  # noqa: F401
               sequence_layers, block_layers)
from .builder import Analysis, Built, NodeInfo, Problem, build, compatible, doc_order  # noqa
from .analyze import analyze  # noqa: F401
