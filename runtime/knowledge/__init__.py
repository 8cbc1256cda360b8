"""Knowledge bundles at run time: the pieces the frozen runtime needs (standard library only)."""
