"""Wire formats, each written once and used in both directions.

Every module (``openai``, ``anthropic``, ``gemini``) exposes the same functions:

- ``decode_request(body, **path) -> ChatRequest``  (front end; raises ProxyError 400 naming the field)
- ``encode_request(req) -> dict``                  (backend)
- ``decode_response(body) -> ChatResponse``        (backend)
- ``encode_response(resp) -> dict``                (front end)
- ``encode_error(err: ProxyError) -> dict``        (front end error shape)
- ``StreamEncoder().encode(event) -> bytes``       (front end SSE frames; ``[DONE]`` etc. included)
- ``StreamDecoder().feed(data: dict) -> list[StreamEvent]`` (backend; one parsed SSE data object)
"""
