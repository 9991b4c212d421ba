"""A plugin whose import fails: it must be reported without stopping anything else."""
import this_module_does_not_exist_anywhere  # noqa: F401
