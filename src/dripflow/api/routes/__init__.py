"""One module per resource; each is a thin layer over the engine and the store."""
