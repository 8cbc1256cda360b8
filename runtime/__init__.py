"""What runs inside an artifact: find the weights, load them, serve.

Everything imported from here ends up in the frozen binary; runtime/ never imports bundler/.
"""

__version__ = "0.1.0"
