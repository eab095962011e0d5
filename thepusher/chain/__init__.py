"""The data path between machines: records on the wire, the healing sender, the hop."""
