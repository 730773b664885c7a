"""reflow.registry — placeholder package; filled by later issues."""
