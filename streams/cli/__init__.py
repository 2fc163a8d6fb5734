"""The ``iocstream`` command line: one module per command, each with its own ``--help``."""
