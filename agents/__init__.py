"""Agents: who answers each number, what it says first and how it listens."""
