"""What faces the open network first, knowing nothing of rooms: HTTP plumbing and JSON errors,
the Host and origin checks, per-client admission, tokens, and where the server may connect."""
