"""Launch targets: `<target>/*.j2` Jinja templates rendered into each bundle, and the GPU/provider catalog."""
