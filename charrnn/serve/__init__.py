"""`charrnn serve`: an OpenAI-compatible HTTP API over loaded models, with continuous batching.

    limits.py     the documented limits (body, prompt, max_tokens, n, streams, time)
    protocol.py   request JSON -> a typed CompletionRequest, or an ApiError (OpenAI's error shape)
    responses.py  the response and stream-chunk JSON
    streams.py    one choice being generated: its seeded uniforms, held-back text, events
    scheduler.py  one worker thread stepping every active stream of a model in one batched step
    registry.py   the models loaded at start, each named by its run
    jobs.py       one request: its streams, its prompt fed off the batch's thread, its bursts
    app.py        the FastAPI app: routes, error handlers
    edge.py       in front of the routes: the key check, the one error edge
    connection.py below the routes: uvicorn's h11 protocol with head/send deadlines and a connection cap
    server.py     uvicorn: the socket bound first, loopback by default, TLS, SIGTERM / Ctrl-C end cleanly
    page.py       the playground page at GET /

FastAPI and uvicorn are an optional extra (`pip install 'charrnn[serve]'`); only app.py, edge.py,
connection.py and server.py import them.
"""
