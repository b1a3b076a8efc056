"""The dashboard and workflow console: a web app over the capture and the executions database.

It sits above both :mod:`scones.monitor` (traffic, drift) and :mod:`scones.workflow`
(executions), so it imports both.
"""
