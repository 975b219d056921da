"""The dictation client (``nova-voice dictate``): a program that speaks WHIP to a Nova Voice
server as any user's would, and prints or types its own captions; nothing of the server's insides."""
