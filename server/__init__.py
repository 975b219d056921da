"""The service around the pipeline: the app factory, settings and state, process entry points
and metrics at the top; the network edge, rooms, WebRTC media and HTTP routes in a package each."""
