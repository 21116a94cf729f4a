"""loft's tagged chat template library (data: <family>.jinja + index.json); see README.md."""
