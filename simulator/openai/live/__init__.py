"""The GPT-Live stand-in: the same server as the Realtime one (simulator.openai.standin), on
GPT-Live's own path. `protocol` has the facts and checks, `backend` the Responses delegation's
nested events, `connection` one session (see its docstring for what the stand-in promises)."""
