"""hardmine: hard negative mining (bootstrapping) for object detectors."""

__version__ = "0.1.0"
