"""The processing: Faust app and agents, pure indicator and alert logic, metrics and the CLI.

May import ``schemas`` and ``connectors``.
"""
