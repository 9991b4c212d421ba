"""A pack whose nodes import a library it lists in requirements.txt and that is not installed."""
from .nodes import NODE_CLASS_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS"]
