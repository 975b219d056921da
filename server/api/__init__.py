"""The APIs people already code against: OpenAI's (audio transcriptions and translations, models,
the Realtime transcription session) and Deepgram's (pre-recorded and live ``/v1/listen``), with
their keys, per-key limits, file jobs and error shapes."""
