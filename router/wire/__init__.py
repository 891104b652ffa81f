"""The codec layer: the canonical model and one codec per wire format, each written once and used
in both directions (front ends and connectors alike).

- ``canonical``  the canonical request, reply and stream events every codec maps to and from
- ``codec``      the :class:`~router.wire.codec.Codec` protocol, :class:`~router.wire.codec.CodecError`
- ``common``     strict field getters and helpers the codecs share
- ``sse``, ``fastjson``, ``offload``  SSE framing, JSON, moving large work off the event loop
- ``openai``, ``anthropic``, ``gemini``, ``responses``  the codecs (``responses``: OpenAI's Responses API)
- ``custom_tools``  freeform tool calls made custom again after a provider that only has functions

Every codec module has the names of :class:`~router.wire.codec.Codec`:

- ``decode_request(body, **path) -> ChatRequest``  (front end; raises CodecError naming the field)
- ``encode_request(req) -> dict``                  (connector)
- ``decode_response(body) -> ChatResponse``        (connector; raises CodecError when malformed)
- ``encode_response(resp) -> dict``                (front end)
- ``encode_error(err) -> dict``                    (front end error shape; ``err``: an ErrorReport)
- ``StreamEncoder().encode(event) -> bytes``       (front end SSE frames; ``[DONE]`` etc. included)
- ``StreamDecoder().feed(data: dict) -> list[StreamEvent]`` (connector; one parsed SSE data object)

This package imports nothing from the rest of ``router`` (nor from ``backends`` or ``dsl``): codecs
know no HTTP status, configuration or server (``tests/test_import_graph.py`` holds it).

Adding the next wire format is adding one module here: write ``router/wire/<format>.py`` with the
names above (``tests/wire/test_codec.py`` checks each codec against the protocol). A front end then
names it in ``router/frontends.py`` (and routes its path in ``router/app.py``); a connector that
speaks it sets ``codec = <format>`` on an ``HttpBackend`` subclass in ``backends/``.
"""
