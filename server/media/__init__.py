"""WebRTC media: the peers and their lifecycle, the offers they accept, the data channels
captions leave by, the publisher that turns a peer's audio into a room's captions, and the
audio tracks a room's voice-over leaves by."""
