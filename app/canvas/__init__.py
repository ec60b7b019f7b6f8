"""The node canvas: a QGraphicsScene that observes the document, and its view."""
