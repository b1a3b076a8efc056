"""scones.deploy: put the very same model, Lambda handlers and state machine on AWS.

boto3 only. A deploy reads what exists, computes a plan of typed changes (each a list of
AWS API calls), and applies it, recording every resource it creates in a manifest
``<prefix>/deploy/<name>/deployment.json`` as it goes. ``destroy`` removes what the manifest
and the deployment's tags name. Nothing here is imported by a lower layer.
"""
