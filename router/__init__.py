"""The Falcon ASGI app that evaluates the rules IR per request and serves the three front ends."""
