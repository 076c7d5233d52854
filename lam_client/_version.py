"""The version of lam_client, in a module of its own so that no submodule imports the package."""

__version__ = "0.1.0"
