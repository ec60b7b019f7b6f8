"""The editor's block edits: group the selection, ungroup instances, add an instance of a
block (from the graph or the user's library), make an instance's block unique, rename a
block, save one to the library. Each document edit is one undo step; each works at the level
the canvas shows (the graph, or the body of the block entered)."""
from __future__ import annotations

from PySide6.QtWidgets import QInputDialog

from core.block_library import SUFFIX, import_block, library_dir, save_block
from core.blocks import BlockDef, add_instance, instances_of
from core.blocks.edit import fresh
from core.document import ID_PATTERN
from core.errors import GraphError, LoomError
from core.layers.block_layers import INTERFACE_KINDS, port_name

from .block_commands import RenameBlock, block_name_problem, snapshot_edit
from .block_promotions import group_in, ungroup_in
from .canvas.levels import real


def ask_text(parent, title, label, text):
    return QInputDialog.getText(parent, title, label, text=text)


def report(window, message):
    """A refused block edit says why in the status bar (nothing changed)."""
    window.statusBar().showMessage(str(message), 10000)


def _edit(window, text, change):
    try:
        return snapshot_edit(window.undo_stack, window.document, text, change)
    except GraphError as exc:
        report(window, exc)
        return None


def instance_ids(window) -> list[str]:
    """The selected block instances at the shown level."""
    doc = window.editing
    return [n for n in window.scene.selected_node_ids() if doc.nodes[n].kind == "Block"]


def block_of_instance(window, node_id) -> str | None:
    spec = window.editing.nodes.get(node_id)
    return spec.attrs.get("block") if spec is not None and spec.kind == "Block" else None


# ---- group / ungroup -------------------------------------------------------------------------

def group_selection(window) -> str | None:
    """Ctrl+G: the selected nodes become one instance of a new block, which is selected."""
    ids = window.scene.selected_node_ids()
    if not ids:
        window.statusBar().showMessage("Select the nodes to group first", 6000)
        return None
    doc, root, block = real(window.editing), window.document, window.scene.levels.block
    instance = _edit(window, "Group", lambda: group_in(root, doc, block, ids))
    if instance is not None:
        window.scene.select_node(instance)
        window.statusBar().showMessage(f"Grouped {len(ids)} nodes into block "
                                       f"{doc.nodes[instance].attrs['block']} ({instance}); "
                                       f"double-click it to edit inside", 8000)
    return instance


def ungroup_selection(window) -> list[str]:
    """Ctrl+Shift+G: the selected instances' nodes back in their place, selected."""
    instances = instance_ids(window)
    if not instances:
        window.statusBar().showMessage("Select a block to ungroup", 6000)
        return []
    doc, root, block = real(window.editing), window.document, window.scene.levels.block
    ids = _edit(window, "Ungroup", lambda: [n for i in instances for n in ungroup_in(root, doc, block, i)])
    window.scene.clearSelection()
    for node_id in ids or ():
        window.scene.nodes[node_id].setSelected(True)
    return ids or []


# ---- instances ----------------------------------------------------------------------------

def add_block(window, source, block, pos) -> str | None:
    """An instance of a block at `pos` (x, y) of the shown level: `source` "doc" (block is a
    definition's name) or "lib" (block is a library BlockDef, copied into the graph first)."""
    doc, root = real(window.editing), window.document
    name = block if source == "doc" else block.name

    def change():
        used = block if source == "doc" else import_block(root, block)
        return add_instance(doc, used, pos)
    instance = _edit(window, f"Add block {name}", change)
    if instance is not None:
        window.scene.select_node(instance)
    return instance


def make_unique(window, instance_id) -> str | None:
    """Point the instance at a copy of its block (the other instances keep the original);
    returns the copy's name."""
    doc, root = real(window.editing), window.document
    name = block_of_instance(window, instance_id)
    new = fresh(name, set(root.blocks))

    def change():
        copy = BlockDef.from_dict(new, root.blocks[name].to_dict())
        root.add_block(copy, index=list(root.blocks).index(name) + 1)
        doc.set_attr(instance_id, "block", new)
        return new
    return _edit(window, f"Make {instance_id} unique", change)


def users(window, name) -> int:
    """How many instances (anywhere in the graph) use block `name`."""
    return len(instances_of(window.document, name))


def initial_attrs(doc, kind) -> dict:
    """A new port node inside a block gets a port name of its own (in, in_2…)."""
    if kind not in INTERFACE_KINDS:
        return {}
    taken = {port_name(n) for n in doc.nodes.values() if n.kind == kind}
    return {"name": fresh("in" if kind == "BlockInput" else "out", taken)}


# ---- naming and the library ------------------------------------------------------------------

def rename_block(window, name) -> bool:
    new, ok = window.blocks.ask_text(window, "Rename block", f"New name of block {name} (every "
                                     f"instance follows):", name)
    new = new.strip()
    if not ok or new == name:
        return False
    problem = block_name_problem(window.document, new, name)
    if problem:
        report(window, problem)
        return False
    window.undo_stack.push(RenameBlock(window.document, name, new))
    return True


def save_to_library(window, name) -> bool:
    """Save block `name` (with the blocks it uses) to the user's library under a name asked
    for; an existing library block of that name is replaced only when confirmed."""
    new, ok = window.blocks.ask_text(window, "Save block to library",
                                     f"Name in the block library ({library_dir()}):", name)
    new = new.strip()
    if not ok or not new:
        return False
    if not ID_PATTERN.fullmatch(new):
        report(window, f"block name {new!r}: use letters, digits, _ and - only")
        return False
    if (library_dir() / f"{new}{SUFFIX}").exists() and not window.ask(
            window, "Replace library block?", f"The library already has a block {new}. Replace it?"):
        return False
    try:
        path = save_block(_named_copy(window.document, name, new))
    except (LoomError, OSError) as exc:
        report(window, f"cannot save block {name}: {exc}")
        return False
    window.blocks.palette.refresh()
    window.statusBar().showMessage(f"Saved block {new} to {path}", 8000)
    return True


def _named_copy(root, name, new):
    defn = root.blocks[name]
    if new == name:
        return defn
    copy = BlockDef.from_dict(new, defn.to_dict())
    # not added to the graph (nothing to undo); it still finds the blocks it uses there
    copy.body.owner = root
    return copy
