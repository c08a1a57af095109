"""Commands back to agents: "check now" and re-tests, published on an agent's command topic.

The flow's return path: people (API, console, CLI) and rules ask an agent to test again.
publish.py builds and sends one command; queue.py is the outbox the rules write re-tests to;
limits.py rate-limits what people send; config.py is the config's `commands:` section.
"""
