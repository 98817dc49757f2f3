"""The GPT-Live backend: OpenAI's GPT-Live API behind the bridge's model interface.

`session` holds the ModelSession, `protocol` the wire format, `timeline` the assembly of timed
transcript fragments into lines. Agents whose backend is "gpt-live" are answered through it.
"""
