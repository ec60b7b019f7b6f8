"""Reusable blocks (groups): a definition (`BlockDef`: a body document, its interface and
promoted attributes) stored in the graph document that uses it, and instances of it (nodes
of kind "Block"). The engine never sees them: `flatten` turns a document with blocks into a
plain one, which build, analysis, plans and training all work on.

The editor's API: group / ungroup / add_instance / rename_port / promote / unpromote change a document
through its methods (events fire, so undo commands and views work); kind_of gives any node's
LayerKind (an instance's ports are its definition's); per_block sums totals keyed by flat ids."""
from ..layers.block_layers import definitions, kind_of  # noqa: F401
from ..layers.flatten import FlatDocument, block_of, flatten, has_blocks  # noqa: F401
from .edit import group, instances_of, root, ungroup, uses  # noqa: F401
from .model import BlockDef  # noqa: F401
from .params import add_instance, owning_block, promote, rename_port, unpromote  # noqa: F401
from .summary import TOP_LEVEL, per_block, plan_rows  # noqa: F401
