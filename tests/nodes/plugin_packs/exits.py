"""A plugin that calls sys.exit at import: still only this plugin fails."""
import sys

sys.exit(3)
