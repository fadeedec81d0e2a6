"""Talking to ASR servers that speak vLLM's ``/v1/realtime``: ``client`` (the websockets adapter
one leg drives: reconnects, backoff, stalls, giving up) and ``probe`` (``bridge check``, and the
pre-flight of the commands that need the server).  Nothing is imported here."""
