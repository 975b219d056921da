"""Everything a room owns: its listeners and numbering, its record and registry, its names,
vocabulary and speakers, its translations and voice-over, transcripts and subtitles, its
outputs, and the Redis bus that shares it across gateways."""
