"""mssp-hub's product code. Plain Python: nothing here imports azure.functions."""

__version__ = "0.1.0"
