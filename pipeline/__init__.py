"""Audio and inference for Nova Voice: no web, no WebRTC, never imports ``server``."""
