"""Device profiles for the modelled device (``pipeline/engines/simulated.py``): JSON files of
what one model costs on one device, by batch shape, each figure with where it was measured."""
