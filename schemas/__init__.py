"""JSON Schemas (2020-12) for the loft config and the locked plan; data files, loaded with importlib.resources."""
