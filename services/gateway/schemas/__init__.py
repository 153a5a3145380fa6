"""The public REST contract by topic (one module each; import from the topic module).

These models also drive /openapi.json.
"""
