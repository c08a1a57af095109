"""Repair tickets: opened and resolved by rules and promises, moved through their lifecycle by people.

rules → **tickets** → notify. lifecycle.py holds the states, the transitions and their events.
"""
