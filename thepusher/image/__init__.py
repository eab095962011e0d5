"""Image files: formats, facts (digest, sizes, zero map), decoding and compressing."""
