"""``simml serve``: a local server speaking enough of the Azure ML v1 REST protocol for the
unmodified ``azureml-core`` client (what LocalStack is to AWS). See ``docs/emulator.md``.

The package is split so that the real client's environment can import the client-side auth
(``simml.emulator.client_auth``) with nothing but the standard library and azureml-core:

``protocol.py``     Azure's error payloads, the routing table of path templates, tokens (HS256 JWT)
``server.py``       the HTTP server (stdlib ``ThreadingHTTPServer``), request log, ``serve()``
``service.py``      the routes: a thin adapter from REST onto simml's API and backend facade
``client_auth.py``  ``SimmlEmulatorAuthentication`` for the real client (imports azureml)
``tlsproxy.py``     the HTTPS CONNECT proxy and the workspace's CA (``cryptography``, when serving)
``blobs.py``        datastore routes and Azure Blob REST over the datastore hooks
``ambient.py``      MSI token, subscriptions, cloud metadata: plain ``Workspace.from_config()``

This ``__init__`` imports nothing, so ``import simml.emulator.client_auth`` stays light.
"""
