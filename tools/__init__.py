"""reflow.tools — placeholder package; filled by later issues."""
