"""Views observe the document model (napari's pattern): subscribe while the view lives,
unsubscribe when Qt destroys it, so a closed view never receives another event."""
from __future__ import annotations


def observe(view, doc, callback):
    """Send `doc`'s events to `callback` until the QObject `view` is destroyed."""
    doc.subscribe(callback)
    view.destroyed.connect(lambda *_: _forget(doc, callback))


def _forget(doc, callback):
    try:
        doc.unsubscribe(callback)
    except ValueError:  # already gone
        pass
