"""The MCP server: ``build_server`` and its lifespan (store, scheduler, service, live
definitions, knowledge sync), the stdio, SSE and Streamable HTTP transports with their
Host/Origin and token checks, the ``stageflow://`` resources, change notifications and the
forwarding of logs to clients."""
