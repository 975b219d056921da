"""The HTTP routes, a module per resource (WHIP, WHEP, viewers, feeds, rooms, transcripts,
pages, ICE, health), and what they check of a request about a room."""
