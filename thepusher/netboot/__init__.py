"""Building the netboot image: TinyCore files in, PXE/iPXE/ISO boot files out."""
