"""A booted machine's side: register, take part in a round, report; put-image; status."""
