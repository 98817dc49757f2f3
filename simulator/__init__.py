"""The simulator: both edges a call touches, stood in locally for development, tests and load.

The product never imports it (tests/test_simulator_boundary.py checks); `make run`'s launcher
(bridge_project/serve.py) starts its stand-ins as subprocesses, by module name.

* ``openai/``: the OpenAI Realtime stand-in. ``standin.RealtimeStandIn`` (GA and beta
  protocols, the service's timing, faults; ``python -m simulator.openai.standin --port 8765``),
  ``connection`` (one session's state machine), ``protocol`` (the protocol's facts and checks,
  in the service's words), ``tools`` (when and how it calls tools), ``timing``, ``vad``.
* ``twilio/``: Twilio. ``caller.SimulatedTwilioCaller`` places a call as Twilio does (signed
  webhook, TwiML, the media stream in real time, playback with marks and clears, and Twilio's
  reaction to REST updates); ``script`` holds its steps; ``rest.TwilioRestStandIn`` is Twilio's
  REST API for calls (``python -m simulator.twilio.rest --port 8766``).
* ``load``: the load generator (``manage.py loadtest``, ``make bench``).
* ``speech``: deterministic speech-like audio.
* ``scenarios``: the demo agents and webhook of ``manage.py simulate_call --scenario``.
* ``management/commands/``: ``simulate_call``, ``loadtest``, ``soak``.

Nothing is re-exported here, so ``python -m simulator.openai.standin`` runs cleanly.
"""
