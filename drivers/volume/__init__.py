"""Volume drivers (entry-point group ``dockyard.volume``)."""
