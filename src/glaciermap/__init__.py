"""glaciermap: map glaciers from satellite imagery and measure how fast each one shrinks."""

__version__ = "0.1.0"
