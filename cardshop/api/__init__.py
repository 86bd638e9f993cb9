"""The merchant REST API (`/api/v1/`): keys, errors, idempotency, pagination and the endpoints. Entry points only:
each view parses input and calls one cardshop service or selector."""
