"""The edges of Nova Voice: HTTP, WebRTC peers, rooms, the CLI. Drives ``pipeline``."""
