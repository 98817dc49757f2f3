"""Local stand-ins for the two services a call touches, for development and end-to-end tests.

* ``standin``: ``RealtimeStandIn``, a local OpenAI Realtime server (GA protocol, beta too),
  with fault injection; ``python -m realtime.simulator.standin --port 8765`` runs one.
* ``caller``: ``SimulatedTwilioCaller``, which places a call the way Twilio does (signed
  webhook, TwiML, media stream paced in real time, playback with marks and clears).
* ``script``: the caller's script steps and the standard test call.
* ``speech``: deterministic speech-like audio.

Nothing is re-exported here, so ``python -m realtime.simulator.standin`` runs cleanly.
"""
