"""xdpstack control plane: attach the XDP demux, claim 3-tuples, launch applications on user-level stacks."""
__version__ = "0.1.0"
