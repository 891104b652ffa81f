"""The HTTP edge: Falcon resources, auth, admin, health, body reading and error replies."""
