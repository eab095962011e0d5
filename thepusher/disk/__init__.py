"""Where a hop puts the stream: a raw disk or file, or a directory a TAR archive unpacks into."""
